"""Faults a supervisor must survive: workers killed from outside, kills in every state, the
zygote dying under running guests. Each test ends by running a normal task on the same supervisor."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from google.protobuf.empty_pb2 import Empty

from tests.integration.harness import HELLO, SLEEPER, Harness
from tests.integration.test_task_api import POD, create, expect_error, pod_task
from wasmvisor.errors import Code
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.supervisor.shim.delete import process_title


def children(pid: int) -> dict[int, str]:
    """Direct children of `pid` with their process titles."""
    out: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out[int(child)] = process_title(int(child)) or ""
    return out


def zygote_of(supervisor: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p, title in children(supervisor).items() if title == "wasmvisor-zygote"]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no zygote under supervisor {supervisor}: {children(supervisor)}")


def gone(pid: int) -> bool:
    """Absent: neither running nor a zombie left unreaped."""
    return not os.path.exists(f"/proc/{pid}")


def run_hello(h: Harness, c, task_id: str) -> None:  # type: ignore[no-untyped-def]
    bundle = h.bundle(task_id, {"hello.wasm": HELLO}, ["/hello.wasm"])
    create(h, c, task_id, bundle)
    h.call(c, "Start", pb.StartRequest(id=task_id), pb.StartResponse)
    assert h.call(c, "Wait", pb.WaitRequest(id=task_id), pb.WaitResponse).exit_status == 0
    assert (bundle / "stdout").read_bytes() == b"hello\n"
    h.call(c, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)


def start_sleeper(h: Harness, c, task_id: str) -> int:  # type: ignore[no-untyped-def]
    bundle = h.bundle(task_id, {"s.wasm": SLEEPER}, ["/s.wasm"])
    create(h, c, task_id, bundle)
    return int(h.call(c, "Start", pb.StartRequest(id=task_id), pb.StartResponse).pid)


def test_worker_killed_from_outside_is_reported_as_137_with_a_task_exit(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "victim", {"s.wasm": SLEEPER}, ["/s.wasm"])
    create(h, c, "victim", bundle)
    pid = h.call(c, "Start", pb.StartRequest(id="victim"), pb.StartResponse).pid
    os.kill(pid, signal.SIGKILL)
    assert h.call(c, "Wait", pb.WaitRequest(id="victim"), pb.WaitResponse).exit_status == 137
    state = h.call(c, "State", pb.StateRequest(id="victim"), pb.StateResponse)
    assert (state.status, state.exit_status) == (types_pb.STOPPED, 137)
    assert h.call(c, "Delete", pb.DeleteRequest(id="victim"), pb.DeleteResponse).exit_status == 137
    want = ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    deadline = time.monotonic() + 10  # events are forwarded asynchronously
    while h.events.topics("victim") != want and time.monotonic() < deadline:
        time.sleep(0.02)
    assert h.events.topics("victim") == want
    assert gone(pid)
    run_hello(h, c, "after-victim")


def test_kill_of_created_exited_and_unknown_tasks(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "created", {"s.wasm": SLEEPER}, ["/s.wasm"])
    pid = create(h, c, "created", bundle).pid
    # Created but never started: the signal reaches the waiting worker, which ends (as runc's
    # init process does); Start afterwards is refused.
    h.call(c, "Kill", pb.KillRequest(id="created", signal=signal.SIGKILL), Empty)
    assert h.call(c, "Wait", pb.WaitRequest(id="created"), pb.WaitResponse).exit_status == 137
    expect_error(h, c, "Start", pb.StartRequest(id="created"), Code.FAILED_PRECONDITION, "STOPPED")
    # Exited: NOT_FOUND, as runc answers, so containerd and CRI treat it as already dead.
    expect_error(h, c, "Kill", pb.KillRequest(id="created", signal=signal.SIGTERM), Code.NOT_FOUND,
                 "already finished")
    expect_error(h, c, "Kill", pb.KillRequest(id="created", signal=signal.SIGKILL, all=True), Code.NOT_FOUND)
    expect_error(h, c, "Kill", pb.KillRequest(id="no-such-task", signal=signal.SIGKILL), Code.NOT_FOUND,
                 "no-such-task")
    expect_error(h, c, "Kill", pb.KillRequest(id="", signal=signal.SIGKILL), Code.INVALID_ARGUMENT, "empty")
    h.call(c, "Delete", pb.DeleteRequest(id="created"), pb.DeleteResponse)
    expect_error(h, c, "Kill", pb.KillRequest(id="created", signal=signal.SIGKILL), Code.NOT_FOUND, "created")
    assert gone(pid)
    # A bad signal number on a live task is the caller's mistake, and the task keeps running.
    start_sleeper(h, c, "alive")
    expect_error(h, c, "Kill", pb.KillRequest(id="alive", signal=0), Code.INVALID_ARGUMENT, "signal")
    expect_error(h, c, "Kill", pb.KillRequest(id="alive", signal=4096), Code.INVALID_ARGUMENT, "signal")
    state = h.call(c, "State", pb.StateRequest(id="alive"), pb.StateResponse)
    assert state.status == types_pb.RUNNING
    h.call(c, "Kill", pb.KillRequest(id="alive", signal=signal.SIGKILL, all=True), Empty)
    assert h.call(c, "Wait", pb.WaitRequest(id="alive"), pb.WaitResponse).exit_status == 137
    h.call(c, "Delete", pb.DeleteRequest(id="alive"), pb.DeleteResponse)


def test_zygote_killed_is_restarted_and_running_guests_keep_their_exit_status(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "first", {"s.wasm": SLEEPER}, ["/s.wasm"])
    supervisor = h.call(c, "Connect", pb.ConnectRequest(id=""), pb.ConnectResponse).shim_pid
    create(h, c, "first", bundle)
    h.call(c, "Start", pb.StartRequest(id="first"), pb.StartResponse)
    second = start_sleeper(h, c, "second")
    third = start_sleeper(h, c, "third")
    old = zygote_of(supervisor)

    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while (new := zygote_of(supervisor)) == old and time.monotonic() < deadline:
        time.sleep(0.05)
    assert new != old, "the zygote was not restarted"
    for task_id in ("first", "second", "third"):
        state = h.call(c, "State", pb.StateRequest(id=task_id), pb.StateResponse)
        assert state.status == types_pb.RUNNING, task_id

    # Orphaned workers: one killed through the API, one from outside, one ends by SIGINT;
    # each keeps its own status, and none is left a zombie.
    h.call(c, "Kill", pb.KillRequest(id="first", signal=signal.SIGTERM), Empty)
    os.kill(second, signal.SIGKILL)
    h.call(c, "Kill", pb.KillRequest(id="third", signal=signal.SIGINT), Empty)
    statuses = {t: h.call(c, "Wait", pb.WaitRequest(id=t), pb.WaitResponse).exit_status
                for t in ("first", "second", "third")}
    assert statuses == {"first": 143, "second": 137, "third": 130}
    for task_id in statuses:
        h.call(c, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)
    assert gone(second) and gone(third)
    # New tasks come from the new zygote.
    run_hello(h, c, "after-zygote")
    assert zygote_of(supervisor) == new


def test_a_container_process_left_by_its_killed_relay_is_reaped_not_left_a_zombie(harness: Harness) -> None:
    """With a pid namespace the worker is the container process's relay (`wasmvisor-init`). Killed
    with -9, it leaves the container process to the supervisor (a child subreaper), which the
    container process then dies to (its parent-death signal): the supervisor reaps it."""
    h = harness
    bundle = h.bundle("orphan", {"s.wasm": SLEEPER}, ["/s.wasm"], annotations=POD)
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"] = {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
    (bundle / "config.json").write_text(json.dumps(spec))
    (bundle / "log").touch()  # a file where containerd has its FIFO: the supervisor's log
    c = h.client(h.start_shim(bundle, "orphan"))
    supervisor = h.call(c, "Connect", pb.ConnectRequest(id=""), pb.ConnectResponse).shim_pid
    create(h, c, "orphan", bundle)
    container = int(h.call(c, "Start", pb.StartRequest(id="orphan"), pb.StartResponse).pid)
    relay = int(Path(f"/proc/{container}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert process_title(relay) == "wasmvisor-init itest/orphan"

    os.kill(relay, signal.SIGKILL)
    assert h.call(c, "Wait", pb.WaitRequest(id="orphan"), pb.WaitResponse).exit_status == 137
    deadline = time.monotonic() + 10
    while not gone(container) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone(container), f"process {container} left a zombie of supervisor {supervisor}: {children(supervisor)}"
    assert f"reaped process {container}, which no one here waits for: returncode -9" in (bundle / "log").read_text()
    h.call(c, "Delete", pb.DeleteRequest(id="orphan"), pb.DeleteResponse)
    run_hello(h, c, "after-orphan")
