"""The library API others build their own shim from (as runwasi's), and what importing it costs."""

from __future__ import annotations

import inspect
import subprocess
import sys

import wasmvisor


def test_the_public_names_resolve_to_the_runwasi_shaped_contract() -> None:
    engine = wasmvisor.Engine
    for member in ("name", "run_wasi", "can_handle", "supported_layer_types", "precompile", "can_precompile"):
        assert hasattr(engine, member), member
    ctx_fields = set(inspect.signature(wasmvisor.RuntimeContext).parameters)
    assert {"args", "envs", "entrypoint", "wasm_layers", "platform"} <= ctx_fields
    for member in ("new", "start", "kill", "delete", "wait"):
        assert hasattr(wasmvisor.Instance, member), member
    assert {"namespace", "bundle", "rootfs"} <= set(inspect.signature(wasmvisor.InstanceConfig).parameters)
    config = wasmvisor.Config()
    assert (config.no_setup_logger, config.default_log_level) == (False, "info")
    assert callable(wasmvisor.shim_main)
    assert wasmvisor.VERSION in wasmvisor.version_text()


def test_importing_wasmvisor_loads_neither_grpc_nor_wasmtime() -> None:
    heavy = "('grpc', 'wasmtime', 'google.protobuf')"
    code = f"import sys, wasmvisor; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_custom_engine_is_an_engine_subclass() -> None:
    class Echo(wasmvisor.Engine):
        name = "echo"

        def run_wasi(self, ctx: wasmvisor.RuntimeContext, stdio: wasmvisor.Stdio) -> int:
            return len(ctx.args)

    ctx = wasmvisor.RuntimeContext(
        args=["/a.wasm", "x"], envs=[], cwd="/", root="/",
        entrypoint=wasmvisor.Entrypoint(name="a", source="/a.wasm", host_path="/a.wasm"),
    )
    assert Echo().prepare(ctx)(wasmvisor.Stdio()) == 2
    assert Echo().can_precompile() is None
