"""wasmvisor: a containerd runtime shim that runs WebAssembly (WASI) programs as containers.

The public library API, for building a shim of your own (as with runwasi):
`Engine`, `RuntimeContext`, `Instance`, `InstanceConfig`, `Exit`, `Config`, `shim_main`, `VERSION`
(docs/library.md).
Names are imported on first use so that `import wasmvisor` stays cheap on the shim's start path.
"""

from __future__ import annotations

from wasmvisor.version import NAME, VERSION, revision, version_text

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the shim's `start` imports this package, typing costs ms
if TYPE_CHECKING:
    from typing import Any

_LAZY = {
    "Engine": "wasmvisor.engines.base",
    "RuntimeContext": "wasmvisor.engines.base",
    "Entrypoint": "wasmvisor.engines.base",
    "Stdio": "wasmvisor.engines.base",
    "WasmLayer": "wasmvisor.engines.base",
    "GuestError": "wasmvisor.engines.base",
    "Instance": "wasmvisor.supervisor.tasks.instance",
    "InstanceConfig": "wasmvisor.supervisor.tasks.instance",
    "Exit": "wasmvisor.supervisor.tasks.instance",
    "Config": "wasmvisor.supervisor.config",
    "shim_main": "wasmvisor.supervisor.shim.main",
}

__all__ = ["NAME", "VERSION", "revision", "version_text", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wasmvisor' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
