"""WASI 0.2 components in wasmtime-py's component API: a command component's `wasi:cli/run` export,
or (entrypoint `path#name`) an exported function that takes no parameters.

`prepare_component` (at Create) compiles the component through the node's cache, checks its export and
links it once in a throwaway Store: wasmtime-py 50 has no `instantiate_pre` for components, so an
instantiation is the only way to learn at Create that an import is missing (the message names it:
`component /app.wasm: unknown import wasi:keyvalue/store@0.2.0-draft`). The ComponentGuest it returns
(at Start) makes a fresh Store and WASI context, instantiates and calls the export once.

Exit status: `wasi:cli/exit` carries ok/err only in WASI 0.2 (exit(3) is 1, as the wasmtime CLI says
it); a `run` that returns err is 1; a trap is 137. Like the core-module path, this compiles wasm:
only a worker (a process that never forks) may call `prepare_component`.
"""

from __future__ import annotations

import logging
import re
import time

import wasmtime
import wasmtime.component as wc

from wasmvisor.engines.base import GuestError, RuntimeContext, Stdio
from wasmvisor.engines.module_cache import ModuleCache
from wasmvisor.engines.wasmtime_wasi import new_store, one_line, run_to_exit

log = logging.getLogger(__name__)

RUN_INTERFACE = "wasi:cli/run@0.2"
"""The export a WASI 0.2 command component runs through (any 0.2.x version)."""

DEFAULT_FUNC = "_start"
"""The entrypoint's function when the spec names none: for a component, `wasi:cli/run`'s `run`."""

_MISSING = re.compile(r"component imports (?:instance|function|resource|type|module|component) `([^`]+)`")

_SHARED: dict[int, wc.Linker] = {}
"""WASI 0.2 linkers by id of their Engine, made once per process (`wasip2_linker`): in the worker that runs
a component (the zygote does not import this module: wasmtime_engine.zygote_preload says why)."""


def wasip2_linker(engine: wasmtime.Engine) -> wc.Linker:
    """A component linker with WASI 0.2 for `engine`, made on first use and kept for the process (making it
    compiles nothing and starts no thread)."""
    linker = _SHARED.get(id(engine))
    if linker is None:
        linker = _SHARED[id(engine)] = wc.Linker(engine)
        linker.add_wasip2()
    return linker


def prepare_component(
    engine: wasmtime.Engine, wasm: bytes, ctx: RuntimeContext, cache: ModuleCache[wc.Component] | None
) -> ComponentGuest:
    """Compile (or load from `cache`), find the export, check the imports; GuestError naming
    the component otherwise."""
    source = ctx.entrypoint.source
    component = _compile(engine, wasm, source, cache)
    path = _export_path(engine, component, ctx.entrypoint.func, source)
    linker = wasip2_linker(engine)
    try:
        linker.instantiate(wasmtime.Store(engine), component)
    except wasmtime.WasmtimeError as exc:
        text = str(exc)
        found = _MISSING.search(text)
        if found:
            raise GuestError(f"component {source}: unknown import {found.group(1)}; "
                             "this engine provides WASI 0.2 (wasi:cli, wasi:io, wasi:filesystem, "
                             "wasi:clocks, wasi:random, wasi:sockets)") from None
        raise GuestError(f"component {source}: cannot link: {one_line(text)}") from None
    return ComponentGuest(engine, linker, component, path, ctx)


def _compile(engine: wasmtime.Engine, wasm: bytes, source: str, cache: ModuleCache[wc.Component] | None
             ) -> wc.Component:
    def compile_serialized(raw: bytes) -> bytes:
        return bytes(wc.Component(engine, raw).serialize())

    def load(path: str) -> wc.Component:
        return wc.Component.deserialize_file(engine, path)

    def load_bytes(serialized: bytes) -> wc.Component:
        return wc.Component.deserialize(engine, serialized)

    try:
        if cache is None:
            return wc.Component(engine, wasm)
        return cache.get(wasm, compile_serialized, load, load_bytes)
    except wasmtime.WasmtimeError as exc:
        raise GuestError(f"component {source}: invalid component: {one_line(str(exc))}") from None


def _export_path(engine: wasmtime.Engine, component: wc.Component, func: str, source: str) -> tuple[str, ...]:
    """The export to call, as names from the component's top: (`wasi:cli/run@0.2.x`, `run`) for
    the default, else (`func`,) for an exported function without parameters."""
    exports = component.type.exports(engine)
    if func == DEFAULT_FUNC:
        runs = [name for name in exports if name.startswith(RUN_INTERFACE)]
        if runs:
            return (runs[0], "run")
        raise GuestError(
            f"component {source}: exports no {RUN_INTERFACE}.x run function (exports: "
            f"{', '.join(sorted(exports)) or 'none'}); name an exported function with `{source}#NAME`"
        )
    item = exports.get(func)
    if item is None:
        funcs = sorted(n for n, e in exports.items() if isinstance(e.ty, wc.FuncType))
        raise GuestError(f"component {source}: no exported function {func!r} (exported functions: "
                         f"{', '.join(funcs) or 'none'})")
    kind = item.ty
    if not isinstance(kind, wc.FuncType):
        raise GuestError(f"component {source}: export {func!r} is not a function")
    if kind.params:
        raise GuestError(f"component {source}: function {func!r} takes {len(kind.params)} parameters; "
                         "an entrypoint takes none")
    return (func,)


class ComponentGuest:
    """A component ready to run: each call makes a new Store, instantiates and calls the export once."""

    def __init__(self, engine: wasmtime.Engine, linker: wc.Linker, component: wc.Component,
                 path: tuple[str, ...], ctx: RuntimeContext) -> None:
        self._engine = engine
        self._linker = linker
        self._component = component
        self._path = path
        self._ctx = ctx
        self.instantiated_ns = 0
        """When the last call had instantiated the component (the worker's `instantiate` trace phase)."""

    def __call__(self, stdio: Stdio) -> int:
        store = new_store(self._engine, self._ctx, stdio)

        def run() -> int:
            instance = self._linker.instantiate(store, self._component)
            self.instantiated_ns = time.time_ns()
            index = self._index()
            func = instance.get_func(store, index) if index is not None else None
            if func is None:  # checked at Create: only a changed file could get here
                raise GuestError(f"component {self._ctx.entrypoint.source}: export {'/'.join(self._path)} is gone")
            result = func(store)
            func.post_return(store)
            return 1 if isinstance(result, wc.Variant) and result.tag == "err" else 0

        return run_to_exit(self._ctx, run)

    def _index(self) -> wc.ExportIndex | None:
        index: wc.ExportIndex | None = None
        for name in self._path:
            index = self._component.get_export_index(name, index)
            if index is None:
                return None
        return index

