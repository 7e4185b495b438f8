"""Engines: the `Engine` contract (base.py), the wasmtime engine, the catalog of known engines and
the compiled-module cache. An engine runs one guest inside a worker; native programs (ELF, `#!`) are not
an engine's business but the worker's (worker/native.py).

May import: the bottom layer only (`errors`, `spec`, `cgroups`, `linux`, `version`); nothing of
containerd, the supervisor or the worker.
"""

from wasmvisor.engines.base import (
    WASM_MAGIC,
    Engine,
    Entrypoint,
    GuestError,
    Platform,
    PreparedGuest,
    RuntimeContext,
    Stdio,
    WasmLayer,
)

__all__ = [
    "WASM_MAGIC",
    "Engine",
    "Entrypoint",
    "GuestError",
    "Platform",
    "PreparedGuest",
    "RuntimeContext",
    "Stdio",
    "WasmLayer",
]
