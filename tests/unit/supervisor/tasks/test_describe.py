"""How `wasmvisor ps` names engines and digests modules (supervisor/tasks/describe.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from wasmvisor.supervisor.tasks.describe import engine_name, file_digest


def test_engine_names_are_short() -> None:
    assert engine_name("wasmvisor.engines.wasmtime_engine:WasmtimeEngine") == "wasmtime"
    assert engine_name("echo_shim:EchoEngine") == "echo"
    assert engine_name("mod:Runner") == "Runner"


def test_a_module_file_is_digested_and_a_missing_one_is_not(tmp_path: Path) -> None:
    (tmp_path / "m.wasm").write_bytes(b"\0asm" * 1000)

    assert file_digest(str(tmp_path / "m.wasm")) == "sha256:" + hashlib.sha256(b"\0asm" * 1000).hexdigest()
    assert file_digest(str(tmp_path / "gone.wasm")) == ""
