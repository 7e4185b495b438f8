"""The Engine contract as runwasi's: `name` and `run_wasi` are all a new engine must write."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmvisor.engines.base import Engine, Entrypoint, GuestError, RuntimeContext, Stdio, WasmLayer


class EchoEngine(Engine):
    """The ten-line engine of issue 18: only the required members."""

    name = "echo"

    def run_wasi(self, ctx: RuntimeContext, stdio: Stdio) -> int:
        return 3


def context(module: Path, layers: tuple[WasmLayer, ...] = ()) -> RuntimeContext:
    return RuntimeContext(
        args=["/app.wasm", "x"], envs=["A=1"], cwd="/", root=str(module.parent), wasm_layers=layers,
        entrypoint=Entrypoint(name="app", source="/app.wasm", host_path=str(module)),
    )


def test_an_engine_with_only_name_and_run_wasi_can_be_made_and_run(tmp_path: Path) -> None:
    module = tmp_path / "app.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0")
    engine = EchoEngine()
    ctx = context(module)
    engine.can_handle(ctx)
    assert engine.prepare(ctx)(Stdio()) == 3
    assert engine.supported_layer_types == ()
    assert engine.can_precompile() is None
    assert engine.precompile([WasmLayer("application/wasm", b"\0asm")]) == [None]


def test_the_default_can_handle_names_a_file_that_is_not_wasm(tmp_path: Path) -> None:
    module = tmp_path / "app.wasm"
    module.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(GuestError, match=r"^module /app.wasm: not a wasm file \(starts with 23212f62\)$"):
        EchoEngine().can_handle(context(module))


def test_the_default_can_handle_names_an_empty_or_missing_file(tmp_path: Path) -> None:
    module = tmp_path / "app.wasm"
    with pytest.raises(GuestError, match="module /app.wasm: no such file in the container image"):
        EchoEngine().can_handle(context(module))
    module.write_bytes(b"")
    with pytest.raises(GuestError, match="module /app.wasm: not a wasm file .starts with nothing: the file is empty"):
        EchoEngine().can_handle(context(module))


def test_the_default_can_handle_accepts_a_container_with_wasm_layers(tmp_path: Path) -> None:
    EchoEngine().can_handle(context(tmp_path / "absent.wasm", (WasmLayer("application/wasm", b"\0asm"),)))


def test_run_wasi_is_still_required() -> None:
    class Nameless(Engine):
        name = "nameless"

    with pytest.raises(TypeError, match="run_wasi"):
        Nameless()  # type: ignore[abstract]
