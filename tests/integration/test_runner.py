"""The compiled runner (wasmvisor/worker/runner.c) runs a plain WASI module in place of the Python
worker: what the guest and the supervisor see is the same on both routes (WASMVISOR_RUNNER=0 keeps
the Python one)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.harness import EXIT_WITH, HELLO, SLEEPER, Harness, wat
from tests.integration.test_task_api import create
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.worker.runner_exec import RUNNER_BINARY

TRAP = wat("""
(module
  (memory (export "memory") 1)
  (func $deep unreachable)
  (func (export "_start") (call $deep)))
""")

GROW = """
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $exit (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)))))
"""
"""Exits 1 when growing its memory by `pages` pages (64 KiB each) is refused, else 0."""


def run_task(h: Harness, task_id: str, wasm: bytes, *, runner: bool = True, pid_namespace: bool = False,
             memory: int | None = None, uid: int = 0, env: dict[str, str] | None = None,
             while_running=None) -> tuple[int, Path]:  # type: ignore[no-untyped-def]
    """Create, start and wait for a task whose rootfs holds `wasm` as /g.wasm; its exit status and bundle.
    `while_running(pid)` is called once it runs."""
    bundle = h.bundle(task_id, {"g.wasm": wasm, "dev/termination-log": b""}, ["/g.wasm"])
    spec = json.loads((bundle / "config.json").read_text())
    linux: dict = {"namespaces": [{"type": "mount"}, *([{"type": "pid"}] if pid_namespace else [])]}
    if memory is not None:
        linux["resources"] = {"memory": {"limit": memory}}
    spec["linux"] = linux
    spec["process"]["user"] = {"uid": uid, "gid": uid}
    spec["mounts"] = [{"destination": "/dev/termination-log", "type": "bind", "options": ["rbind"],
                       "source": str(bundle / "termination")}]
    (bundle / "termination").write_bytes(b"")
    (bundle / "config.json").write_text(json.dumps(spec))
    c = h.client(h.start_shim(bundle, task_id, env_extra={"WASMVISOR_RUNNER": "1" if runner else "0", **(env or {})}))
    created = create(h, c, task_id, bundle)
    h.call(c, "Start", pb.StartRequest(id=task_id), pb.StartResponse)
    if while_running is not None:
        while_running(created.pid)
    status = h.call(c, "Wait", pb.WaitRequest(id=task_id), pb.WaitResponse).exit_status
    h.call(c, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)
    return status, bundle


def process_name(pid: int) -> tuple[str, str]:
    """comm and cmdline of `pid`, once it has left the Python worker's start (up to 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if comm == "wasmvisor-run" or time.monotonic() > deadline:
            return comm, cmdline
        time.sleep(0.05)


def test_the_runner_binary_is_built() -> None:
    assert RUNNER_BINARY.is_file(), "scripts/setup.sh builds it"


def test_hello_runs_in_the_runner_and_prints_hello(harness: Harness) -> None:
    status, bundle = run_task(harness, "r-hello", HELLO)
    assert status == 0
    assert (bundle / "stdout").read_bytes() == b"hello\n"


def test_a_sleeping_guest_is_the_runner_process_not_python(harness: Harness) -> None:
    seen: list[tuple[str, str]] = []

    def look(pid: int) -> None:
        seen.append(process_name(pid))
        os.kill(pid, signal.SIGKILL)

    status, _ = run_task(harness, "r-sleep", SLEEPER, while_running=look)
    comm, cmdline = seen[0]
    assert comm == "wasmvisor-run"
    assert cmdline.strip() == "wasmvisor-worker itest/r-sleep"  # the worker's title, as ps and delete know it
    assert status == 137


def test_with_runner_off_python_runs_the_guest(harness: Harness) -> None:
    seen: list[tuple[str, str]] = []

    def look(pid: int) -> None:
        time.sleep(0.3)
        seen.append(process_name(pid))
        os.kill(pid, signal.SIGKILL)

    run_task(harness, "r-off", SLEEPER, runner=False, while_running=look)
    comm, cmdline = seen[0]
    assert comm != "wasmvisor-run" and cmdline.startswith("wasmvisor-worker")


def test_proc_exit_code_is_the_task_exit_status(harness: Harness) -> None:
    assert run_task(harness, "r-exit", wat(EXIT_WITH.format(code=42)))[0] == 42


def test_a_trap_ends_137_with_the_same_termination_message_as_python(harness: Harness) -> None:
    status, bundle = run_task(harness, "r-trap", TRAP)
    python_status, python_bundle = run_task(harness, "p-trap", TRAP, runner=False)
    message = (bundle / "termination").read_text()
    assert status == python_status == 137
    assert "guest /g.wasm trapped: wasm trap: wasm `unreachable` instruction executed" in message
    assert message == (python_bundle / "termination").read_text()


def test_the_memory_limit_refuses_memory_grow_beyond_it(harness: Harness) -> None:
    limit = 64 << 20
    assert run_task(harness, "r-grow-ok", wat(GROW.format(pages=16)), memory=limit)[0] == 0
    assert run_task(harness, "r-grow-no", wat(GROW.format(pages=2048)), memory=limit)[0] == 1


def test_sigterm_ends_the_runner_as_pid_1_with_143(harness: Harness) -> None:
    seen: list[tuple[str, str]] = []

    def term(pid: int) -> None:
        seen.append(process_name(pid))
        os.kill(pid, signal.SIGTERM)  # the container's PID 1 itself (its relay would forward it too)

    status, _ = run_task(harness, "r-term", SLEEPER, pid_namespace=True, while_running=term)
    assert seen[0][0] == "wasmvisor-run"
    assert status == 143



def test_a_guest_of_another_uid_runs_in_the_runner_too(harness: Harness) -> None:
    # The uid may not read the module cache (a 0700 folder of root's here): the runner then loads the
    # module from the fd the worker opened before it changed its identity.
    cache = harness.base / "private-cache"
    cache.mkdir(mode=0o700)
    private = {"WASMVISOR_CACHE_DIR": str(cache)}
    seen: list[tuple[str, str]] = []

    def look(pid: int) -> None:
        seen.append(process_name(pid))
        status = Path(f"/proc/{pid}/status").read_text()
        seen.append(("uid", next(line for line in status.splitlines() if line.startswith("Uid:"))))
        os.kill(pid, signal.SIGKILL)

    status, _ = run_task(harness, "r-uid", SLEEPER, uid=1000, env=private, while_running=look)
    assert seen[0][0] == "wasmvisor-run"
    assert seen[1][1].split()[1:] == ["1000"] * 4
    assert status == 137
    status, bundle = run_task(harness, "r-uid-hello", HELLO, uid=1000, env=private)
    assert (status, (bundle / "stdout").read_bytes()) == (0, b"hello\n")
    assert list(cache.glob("*.cwasm")), "the modules went through the private cache"


@pytest.mark.parametrize("runner", [True, False], ids=["runner", "python"])
def test_the_exit_is_told_once_the_guest_output_is_read(harness: Harness, runner: bool) -> None:
    # ctr (1.6) cancels its stdout reader when the exit comes: one whose open had not finished yet (a loaded
    # node) lost the output. So the exit waits, at most 1 s, until the output FIFO's reader took the bytes.
    h, task_id = harness, f"drain-{'runner' if runner else 'python'}"
    bundle = h.bundle(task_id, {"g.wasm": HELLO}, ["/g.wasm"])
    os.mkfifo(bundle / "stdout")
    reader = os.open(bundle / "stdout", os.O_RDONLY | os.O_NONBLOCK)  # there, but not reading yet
    try:
        c = h.client(h.start_shim(bundle, task_id, env_extra={"WASMVISOR_RUNNER": "1" if runner else "0"}))
        create(h, c, task_id, bundle)
        h.call(c, "Start", pb.StartRequest(id=task_id), pb.StartResponse)
        time.sleep(0.5)  # hello has printed and ended by now; the FIFO holds its line
        assert h.call(c, "State", pb.StateRequest(id=task_id), pb.StateResponse).status == types_pb.RUNNING
        assert os.read(reader, 100) == b"hello\n"
        assert h.call(c, "Wait", pb.WaitRequest(id=task_id), pb.WaitResponse, timeout=5).exit_status == 0
        h.call(c, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)
    finally:
        os.close(reader)
