"""The runner (wasmvisor/worker/runner.c) writes the `Exited` line and a trap's note itself: both must read
exactly as the Python worker's (ipc/messages.py encode, engines/wasmtime_wasi.py one_line), which these
shared vectors check through the runner's --check-* modes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from wasmvisor.engines.wasmtime_wasi import one_line
from wasmvisor.ipc import messages
from wasmvisor.ipc.messages import Exited
from wasmvisor.worker.runner_exec import RUNNER_BINARY

VECTORS = json.loads((Path(__file__).parent / "data" / "runner_vectors.json").read_text())


def runner(*args: str) -> bytes:
    assert RUNNER_BINARY.is_file(), "scripts/setup.sh builds the runner"
    return subprocess.run([str(RUNNER_BINARY), *args], capture_output=True, check=True).stdout


@pytest.mark.parametrize("vector", VECTORS["exited"])
def test_the_runner_writes_the_exited_line_python_encodes(vector: dict) -> None:  # type: ignore[type-arg]
    phases = vector["phases"]
    expected = Exited(code=vector["code"], at_ns=vector["at_ns"], note=vector["note"],
                      phases={} if phases is None else {"instantiate": phases[:2], "run": phases[1:]})
    line = runner("--check-exited", str(vector["code"]), str(vector["at_ns"]), vector["note"],
                  *(str(p) for p in (phases or [0, 0, 0])))
    assert messages.decode(line) == expected
    assert line == messages.encode(expected)


@pytest.mark.parametrize("message", VECTORS["one_line"])
def test_the_runner_puts_a_wasmtime_error_on_one_line_as_python_does(message: str) -> None:
    assert runner("--check-one-line", message).decode() == one_line(message) + "\n"


def test_a_trap_note_names_the_guest_as_the_python_worker_logs_it() -> None:
    message = VECTORS["one_line"][1]
    assert runner("--check-trap-note", "/app.wasm", message).decode() == \
        f"guest /app.wasm trapped: {one_line(message)}\n"


def test_a_long_note_is_cut_at_the_note_limit_on_a_character_boundary() -> None:
    note = runner("--check-trap-note", "/a.wasm", "\u00e9" * 3000).rstrip(b"\n")
    assert len(note) <= 2000
    note.decode()  # whole UTF-8 characters only
