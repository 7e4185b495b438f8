"""What the supervisor may know about an engine without importing it: its name, the OCI layer
media types it runs, how many wasm layers it takes, and the fingerprint of its compiled code.

The supervisor never imports an engine module (wasmtime costs ~40 ms to import and must not be
loaded in a process that forks the zygote's peers); it names engines by their `module:Class` ref
and looks them up here. The engine modules take these values from here too, so both sides agree
(tests/unit/engines/test_catalog.py checks it).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MODULE_LAYER = "application/wasm"
COMPONENT_LAYER = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
"""runwasi's layer type for a component."""
SPIN_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
"""Spin's layer type for a wasm file (module or component) of an application."""

WASMTIME_SETTINGS = "defaults"
"""The code-changing wasmtime settings the wasmtime engine uses (none changed yet: a change to its
Config that alters generated code must change this string, which is part of the fingerprint)."""


@dataclass(frozen=True)
class EngineInfo:
    name: str
    layer_types: tuple[str, ...]
    """OCI layer media types the engine runs (Engine.supported_layer_types)."""
    max_layers: int = 1
    """How many wasm layers one container may have."""
    fingerprint: Callable[[], str] | None = None
    """What the engine's compiled code depends on (None: it does not precompile)."""


@functools.cache
def wasmtime_fingerprint() -> str:
    """wasmtime-py's version and library, the machine and the settings; found on disk without
    importing wasmtime (the package folder holds the library, its parent the dist-info)."""
    spec = importlib.util.find_spec("wasmtime")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        return f"wasmtime-py unknown lib=0 {os.uname().machine} {WASMTIME_SETTINGS}"
    package = Path(folders[0])
    versions = sorted(p.name for p in package.parent.glob("wasmtime-*.dist-info"))
    try:
        library = max(p.stat().st_size for p in package.glob("*/*wasmtime*.so*"))
    except (OSError, ValueError):
        library = 0
    return f"wasmtime-py {'/'.join(versions) or 'unknown'} lib={library} {os.uname().machine} {WASMTIME_SETTINGS}"


WASMTIME = EngineInfo(
    name="wasmtime", layer_types=(MODULE_LAYER, COMPONENT_LAYER, SPIN_LAYER), max_layers=1,
    fingerprint=wasmtime_fingerprint,
)

ENGINES = {"wasmvisor.engines.wasmtime_engine:WasmtimeEngine": WASMTIME}


def info_for(ref: str) -> EngineInfo:
    """The EngineInfo of the engine named `module:Class`; an engine not listed here runs the
    default wasm layer types and never precompiles."""
    known = ENGINES.get(ref)
    if known is not None:
        return known
    return EngineInfo(name=ref.rpartition(":")[2] or ref, layer_types=(MODULE_LAYER, COMPONENT_LAYER))
