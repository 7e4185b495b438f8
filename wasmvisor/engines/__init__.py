"""Engines: the Engine contract and its implementations (wasmtime; native executor later)."""

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
