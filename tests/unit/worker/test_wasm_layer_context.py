"""The worker takes an OCI Wasm image's module from the layer files the supervisor wrote."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import wasmtime

from wasmvisor.engines.base import Stdio, WasmLayer
from wasmvisor.engines.catalog import MODULE_LAYER
from wasmvisor.engines.module_cache import ModuleCache
from wasmvisor.engines.wasmtime_engine import WasmtimeEngine, engine_fingerprint
from wasmvisor.errors import Internal
from wasmvisor.ipc import messages
from wasmvisor.ipc.messages import Configure, LayerFile
from wasmvisor.spec import Spec
from wasmvisor.worker.main import runtime_context

EXIT7 = bytes(wasmtime.wat2wasm(
    '(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'
    ' (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 7))))'
))


def spec(args0: str) -> Spec:
    return Spec(args=(args0,), env=(), cwd="/", terminal=False, annotations={}, root_path="rootfs")


def configure(tmp_path: Path, *layers: LayerFile) -> Configure:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    return Configure(namespace="ns", id="id", bundle=str(tmp_path), rootfs=str(tmp_path / "rootfs"),
                     wasm_layers=layers)


def test_configure_carries_layer_paths_and_stays_compatible() -> None:
    layer = LayerFile(MODULE_LAYER, "sha256:ab", "/b/wasm/ab.wasm")
    msg = Configure(namespace="n", id="i", bundle="/b", rootfs="/r", wasm_layers=(layer,))
    assert messages.decode(messages.encode(msg)) == msg
    version = messages.PROTOCOL_VERSION
    old = b'{"v":%d,"kind":"configure","namespace":"n","id":"i","bundle":"/b","rootfs":"/r"}' % version
    decoded = messages.decode(old)
    assert isinstance(decoded, Configure) and decoded.wasm_layers == ()
    with pytest.raises(messages.ProtocolError, match="bad fields"):
        messages.decode(old[:-1] + b',"wasm_layers":[{"digest":"x"}]}')


def test_runtime_context_reads_the_layer_files(tmp_path: Path) -> None:
    path = tmp_path / "ab.wasm"
    path.write_bytes(EXIT7)
    ctx = runtime_context(configure(tmp_path, LayerFile(MODULE_LAYER, "sha256:ab", str(path))), spec("/app.wasm"))
    assert [(x.media_type, x.data) for x in ctx.wasm_layers] == [(MODULE_LAYER, EXIT7)]
    assert ctx.entrypoint.source == "/app.wasm"


def test_a_missing_layer_file_is_an_internal_error_naming_the_layer(tmp_path: Path) -> None:
    with pytest.raises(Internal, match="wasm layer sha256:ab: cannot read"):
        runtime_context(configure(tmp_path, LayerFile(MODULE_LAYER, "sha256:ab", str(tmp_path / "gone"))),
                        spec("/app.wasm"))


def test_the_engine_runs_the_layer_through_the_module_cache(tmp_path: Path) -> None:
    path = tmp_path / "ab.wasm"
    path.write_bytes(EXIT7)
    ctx = runtime_context(configure(tmp_path, LayerFile(MODULE_LAYER, "sha256:ab", str(path))), spec("/app.wasm"))
    cache = ModuleCache[wasmtime.Module](tmp_path / "cache", engine_fingerprint())
    guest = WasmtimeEngine(cache=cache).prepare(ctx)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        assert guest(Stdio(devnull, devnull, devnull)) == 7
    finally:
        os.close(devnull)
    assert cache.compiled(EXIT7) is not None, "compiled once, kept for the supervisor to store"


def test_the_engine_precompiles_core_module_layers_only() -> None:
    engine = WasmtimeEngine(cache=None)
    assert engine.can_precompile() == engine_fingerprint()
    module, component = engine.precompile([WasmLayer(MODULE_LAYER, EXIT7), WasmLayer("other", b"x")])
    assert module and component is None
    assert wasmtime.Module.deserialize(engine.engine, module).exports[0].name == "memory"
