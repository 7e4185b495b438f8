"""The wasmtime engine: runs a WASI preview 1 core module's entrypoint with wasmtime-py; a component
goes to wasmtime_component (WASI 0.2, in this process) or wasmtime_cli (HTTP, WASI 0.3), as
component_world decides from its import and export names.

`prepare` (at Create) compiles, checks the export and the imports and pre-links the module;
the PreparedGuest it returns (at Start) makes a fresh Store and WASI context and calls the export.

This module compiles wasm, so it must only be used in a process that never forks afterwards (a
worker): a child forked from a process that compiled with wasmtime's parallel compiler hangs at
its own first compile. Importing it is harmless (it creates nothing at import time).

Paths in the guest: the container root is preopened as `/`. wasi-libc (here 2022-05, and its
current main branch alike) starts every program with its own cwd `/` and resolves relative paths
against it; it strips leading `/` and `./` from preopen names, so a preopen named `.` is the same
prefix as `/` and would shadow the root instead of adding a cwd. There is no WASI p1 call that
gives a program a starting directory, so for a spec cwd other than `/` the guest gets `PWD=<cwd>`
(unless the spec sets PWD) and relative paths still resolve from `/`; a guest that wants the cwd
calls `chdir(getenv("PWD"))` (measured in tests/unit/engines/test_wasmtime_engine.py).

Compiled modules go through the node-wide ModuleCache (wasmvisor.engines.module_cache): a module
is compiled once per node and then loaded with `Module.deserialize_file`, which maps the verified
entry instead of copying it, so workers running the same module share its code pages.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import wasmtime

from wasmvisor.engines.base import (
    WASM_MAGIC,
    Engine,
    GuestError,
    PreparedGuest,
    RuntimeContext,
    Stdio,
    WasmLayer,
    guest_env,
    not_wasm,
    read_head,
)
from wasmvisor.engines.catalog import MODULE_LAYER, WASMTIME, wasmtime_fingerprint
from wasmvisor.engines.compile_child import CompileError, compile_in_child
from wasmvisor.engines.component_world import ComponentFormatError, Route, World, is_component, read_world
from wasmvisor.engines.module_cache import ModuleCache
from wasmvisor.engines.wasmtime_runner import RunnerJob, job_of
from wasmvisor.engines.wasmtime_wasi import new_store, one_line, run_to_exit
from wasmvisor.engines.workload import WorkloadOptions, configure

if TYPE_CHECKING:
    import wasmtime.component as wc  # imported by the worker that runs a component (zygote_preload)

__all__ = ["MODULE_LAYER", "WasmtimeEngine", "engine_fingerprint", "guest_env", "one_line"]

log = logging.getLogger(__name__)

_SHARED: dict[bool, tuple[wasmtime.Engine, wasmtime.Linker]] = {}
"""The zygote's Engine and WASI linker (by parallel_compilation), made by `zygote_preload`."""


def _new_engine(parallel: bool) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.parallel_compilation = parallel
    return wasmtime.Engine(config)


def _wasi_linker(engine: wasmtime.Engine) -> wasmtime.Linker:
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    return linker


def zygote_preload() -> None:
    """Make the default Engine and its WASI linker once, in the zygote (or the node's template) after
    its imports, so that every worker forked afterwards uses them instead of making its own (measured:
    ~0.4 MB of private memory and ~0.7 ms a worker). Making an Engine compiles nothing and starts no
    thread, so the process stays safe to fork: only a compile would not be (module docstring); a
    worker forked from here compiles with this Engine fine, its compile threads start in the worker.

    Components (wasmtime.component and the WASI 0.2 linker; the wasmtime CLI's route and the shutil,
    tempfile, bz2 and lzma it imports) are not preloaded: their import is ~2 MB of the template's memory,
    shared by every group's supervisor and zygote, for routes most guests never take; a worker that runs
    a component imports them itself (~30 ms on a loaded machine)."""
    if True not in _SHARED:
        engine = _new_engine(True)
        _SHARED[True] = (engine, _wasi_linker(engine))


class WasmtimeEngine(Engine):
    """Runs core wasm modules (binary, or `.wat` text) with wasmtime and WASI preview 1."""

    name = WASMTIME.name
    supported_layer_types = WASMTIME.layer_types

    def __init__(
        self, parallel_compilation: bool = True, cache: ModuleCache[wasmtime.Module] | None | Literal["env"] = "env"
    ) -> None:
        """`parallel_compilation=False` keeps the calling process safe to fork later (slower
        compiles); a worker, which never forks, leaves it on. `cache` is the compiled-module
        cache: by default the one $WASMVISOR_CACHE_DIR names (see module_cache), None for none."""
        self._parallel = parallel_compilation
        self._engine: wasmtime.Engine | None = None
        self._settings = ""
        """The workload's engine settings this engine was made with (WorkloadOptions.engine_key)."""
        self._loaded_file: str | None = None
        """The module-cache entry the last module `_compile` returned was mapped from, if it was."""
        self._cache: ModuleCache[wasmtime.Module] | None = (
            ModuleCache[wasmtime.Module].from_env(engine_fingerprint()) if cache == "env" else cache
        )
        # Components go to the same folder under their own fingerprint: a serialized component is
        # not a serialized module, and the fingerprint is part of an entry's key and record.
        self._component_cache: ModuleCache[wc.Component] | None = (
            None if self._cache is None
            else ModuleCache(self._cache.root, f"{self._cache.fingerprint} component", self._cache.max_bytes)
        )

    @property
    def engine(self) -> wasmtime.Engine:
        """The wasmtime Engine, made on first use (never at import: see the module docstring)."""
        if self._engine is None:
            shared = _SHARED.get(self._parallel)
            self._engine = shared[0] if shared is not None else _new_engine(self._parallel)
        return self._engine

    def _linker(self) -> wasmtime.Linker:
        """A linker with WASI defined for `engine`: the zygote's when that is the engine in use."""
        shared = _SHARED.get(self._parallel)
        if shared is not None and shared[0] is self.engine:
            return shared[1]
        return _wasi_linker(self.engine)

    def can_handle(self, ctx: RuntimeContext) -> None:
        source = ctx.entrypoint.source
        layer = _guest_layer(ctx)
        head = layer[:8] if layer is not None else read_head(ctx.entrypoint.host_path, source)
        if not head.startswith(WASM_MAGIC) and not (layer is None and ctx.entrypoint.host_path.endswith(".wat")):
            raise not_wasm(source, head)

    def prepare(self, ctx: RuntimeContext) -> PreparedGuest:
        if ctx.options.engine_key() != self._settings:
            return self.with_settings(ctx.options).prepare(ctx)
        self.can_handle(ctx)
        source, func = ctx.entrypoint.source, ctx.entrypoint.func
        if not os.path.isdir(ctx.root):
            raise GuestError(f"container root {ctx.root}: not a directory")
        wasm = self._read(ctx)
        if is_component(wasm[:8]):
            return self._prepare_component(wasm, ctx)
        module = self._compile(wasm, source)

        exports = {e.name: e.type for e in module.exports}
        kind = exports.get(func)
        if kind is None:
            funcs = sorted(n for n, t in exports.items() if isinstance(t, wasmtime.FuncType))
            raise GuestError(
                f"module {source}: no exported function {func!r} (exported functions: "
                f"{', '.join(funcs) or 'none'})"
            )
        if not isinstance(kind, wasmtime.FuncType):
            raise GuestError(f"module {source}: export {func!r} is not a function")
        if kind.params:
            raise GuestError(
                f"module {source}: function {func!r} takes {len(kind.params)} parameters; "
                "an entrypoint takes none"
            )

        linker = self._linker()
        try:
            pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            # Only now are the imports looked at one by one (a worker that links fine is spared a
            # probe Store and an object per import): the message names what this engine lacks.
            missing = self._missing_imports(linker, module)
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise GuestError(
                    f"module {source}: unknown import {missing[0]}{more}; "
                    "this engine provides WASI preview 1 (wasi_snapshot_preview1) only"
                ) from None
            raise GuestError(f"module {source}: cannot link: {one_line(str(exc))}") from None
        return WasmtimeGuest(self.engine, pre, ctx, self._loaded_file)

    def with_settings(self, options: WorkloadOptions) -> WasmtimeEngine:
        """An engine of its own for a workload's settings (fuel, epochs, wasmtime.Config settings), whose
        compiled modules are cached under a key that names them."""
        key = options.engine_key()
        config = wasmtime.Config()
        config.parallel_compilation = self._parallel
        try:
            configure(config, options)
            engine = wasmtime.Engine(config)
        except (wasmtime.WasmtimeError, ValueError, TypeError) as exc:
            raise GuestError(f"wasmtime settings {key}: {one_line(str(exc))}") from None
        cache = None if self._cache is None else dataclasses.replace(self._cache,
                                                                      fingerprint=f"{self._cache.fingerprint};{key}")
        other = WasmtimeEngine(self._parallel, cache=cache)
        other._engine, other._settings = engine, key
        return other

    def _missing_imports(self, linker: wasmtime.Linker, module: wasmtime.Module) -> list[str]:
        """`module::name` of each import of `module` that `linker` does not define."""
        probe = wasmtime.Store(self.engine)
        missing = []
        for imp in module.imports:
            try:
                linker.get(probe, imp.module, imp.name or "")
            except wasmtime.WasmtimeError:
                missing.append(f"{imp.module}::{imp.name}")
        return missing

    def run_wasi(self, ctx: RuntimeContext, stdio: Stdio) -> int:
        return self.prepare(ctx)(stdio)

    def _read(self, ctx: RuntimeContext) -> bytes:
        """The guest's bytes: its wasm layer, else the entrypoint file."""
        layer = _guest_layer(ctx)
        if layer is not None:
            return layer
        try:
            with open(ctx.entrypoint.host_path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise GuestError(f"module {ctx.entrypoint.source}: cannot read: {exc.strerror}") from None

    def _prepare_component(self, wasm: bytes, ctx: RuntimeContext) -> PreparedGuest:
        """In this process (wasmtime-py) for a WASI 0.2 command; else by the wasmtime CLI
        (HTTP handlers, WASI 0.3), chosen from the component's import and export names."""
        try:
            world = read_world(wasm)
        except ComponentFormatError as exc:  # wasmtime's own error says more: let it
            log.debug("component %s: %s", ctx.entrypoint.source, exc)
            world = World((), ())
        if world.route is not Route.COMMAND:
            from wasmvisor.engines.wasmtime_cli import prepare_cli  # shutil, tempfile: see zygote_preload

            return prepare_cli(wasm, world, ctx, self._cache.root if self._cache is not None else None)
        log.info("engine %s: %s is a WASI 0.2 component: running it with wasmtime-py's component API",
                 self.name, ctx.entrypoint.source)
        from wasmvisor.engines.wasmtime_component import prepare_component  # wasmtime.component: see zygote_preload

        return prepare_component(self.engine, wasm, ctx, self._component_cache)

    def _compile(self, raw: bytes, source: str) -> wasmtime.Module:
        wasm: bytes | str = raw
        what = "wasm"
        if not raw.startswith(WASM_MAGIC):
            what = "wat"
            try:
                wasm = raw.decode()
            except UnicodeDecodeError:
                raise GuestError(f"module {source}: invalid wat: not UTF-8 text") from None
        raw = wasm.encode() if isinstance(wasm, str) else wasm
        self._loaded_file = None
        try:
            if self._cache is None:
                return wasmtime.Module.deserialize(self.engine, self._compile_serialized(raw))
            return self._cache.get(raw, self._compile_serialized, self._deserialize_file, self._deserialize)
        except (wasmtime.WasmtimeError, CompileError) as exc:
            raise GuestError(f"module {source}: invalid {what}: {one_line(str(exc))}") from None

    def can_precompile(self) -> str | None:
        return engine_fingerprint()

    def precompile(self, layers: Sequence[WasmLayer]) -> list[bytes | None]:
        """The serialized module of each core-module layer (what the module cache and the content
        store keep). Compiles: call it only where compiling is safe (a worker, never the zygote)."""
        return [self._compile_serialized(x.data) if x.media_type == MODULE_LAYER else None for x in layers]

    def _compile_serialized(self, wasm: bytes) -> bytes:
        """The compiled module, made in a child process when compiling would start threads here
        (engines/compile_child.py)."""
        if self._parallel:
            return compile_in_child(self._compile_here, wasm)
        return self._compile_here(wasm)

    def _compile_here(self, wasm: bytes) -> bytes:
        text: bytes | str = wasm if wasm.startswith(WASM_MAGIC) else wasm.decode()
        return bytes(wasmtime.Module(self.engine, text).serialize())

    def _deserialize_file(self, path: str) -> wasmtime.Module:
        module = wasmtime.Module.deserialize_file(self.engine, path)
        self._loaded_file = path
        return module

    def _deserialize(self, serialized: bytes) -> wasmtime.Module:
        return wasmtime.Module.deserialize(self.engine, serialized)


class WasmtimeGuest:
    """A linked module ready to run: each call makes a new Store and runs the export once."""

    def __init__(self, engine: wasmtime.Engine, pre: wasmtime.InstancePre, ctx: RuntimeContext,
                 module_file: str | None = None) -> None:
        self._engine = engine
        self._pre = pre
        self._ctx = ctx
        self.runner_job: RunnerJob = job_of(ctx, module_file)
        """The same run for the compiled runner (engines/wasmtime_runner.py), which the worker may exec instead."""
        self.instantiated_ns = 0
        """When the last call had instantiated the module (the worker's `instantiate` trace phase)."""

    def __call__(self, stdio: Stdio) -> int:
        store = new_store(self._engine, self._ctx, stdio)

        def run() -> int:
            instance = self._pre.instantiate(store)
            self.instantiated_ns = time.time_ns()
            entry = instance.exports(store)[self._ctx.entrypoint.func]
            assert isinstance(entry, wasmtime.Func)
            entry(store)
            return 0

        return run_to_exit(self._ctx, run)


def engine_fingerprint() -> str:
    """What compiled code depends on: wasmtime's version and library, the machine, the settings
    (wasmvisor.engines.catalog computes it, so the supervisor knows it without importing wasmtime).
    Computed once per process (the zygote, at import: its workers inherit it)."""
    return wasmtime_fingerprint()


def _guest_layer(ctx: RuntimeContext) -> bytes | None:
    """The bytes of the container's wasm layer, if it has one. Its media type does not say what it
    holds (the CNCF artifact's `application/wasm` layer is a component as often as a core module):
    the bytes do."""
    for layer in ctx.wasm_layers:
        if layer.media_type in WASMTIME.layer_types:
            return layer.data
    return None


engine_fingerprint()  # in the zygote's preload, so that no worker spends its ~1 ms of file lookups
