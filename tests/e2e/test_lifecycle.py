"""Faults seen through containerd 1.6: a worker killed from outside, the supervisor killed with
SIGKILL, containerd restarted under running guests. Exit statuses come from the /tasks/exit event
and from a foreground `ctr run` (see test_core.py for ctr's habits)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr
from tests.e2e.host import mounts_under, processes_titled
from tests.e2e.test_core import _eventually

ImageRef = Callable[[str], str]


def _one(title: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = processes_titled(title)
        if len(pids) == 1:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError(f"not exactly one process titled {title!r}: {processes_titled(title)}")


def _run_detached(ctr: Ctr, image: ImageRef, container_id: str) -> int:
    started = ctr.run_container(image("sleep"), container_id, rm=False, flags=["--detach", "--null-io"])
    assert started.returncode == 0, started.output
    return ctr.wait_for_task_status(container_id, "RUNNING").pid


def test_worker_killed_with_kill_9_is_seen_by_containerd_as_137(
    ctr: Ctr, image: ImageRef, container_id: str
) -> None:
    with ctr.events() as events:
        run = ctr.start_container(image("sleep"), container_id)
        try:
            run.wait_for_stdout("sleeping\n", timeout=20)
            worker = _one(f"wasmvisor-worker {ctr.namespace}/{container_id}")
            os.kill(worker, signal.SIGKILL)
            assert run.wait(timeout=20).returncode == 137
        finally:
            run.kill()
        exit_event = events.wait_for("/tasks/exit", container_id)
    assert exit_event.payload.get("exit_status") == 137, exit_event.line
    assert exit_event.payload.get("pid") == worker, exit_event.line


def test_supervisor_killed_with_sigkill_is_cleaned_up_and_the_id_runs_again(
    containerd: PrivateContainerd, ctr: Ctr, image: ImageRef, container_id: str
) -> None:
    bundle = containerd.bundle_dir(ctr.namespace, container_id)
    worker = _run_detached(ctr, image, container_id)
    supervisor = _one(f"wasmvisor-shim {ctr.namespace}/{container_id}")
    assert mounts_under(bundle / "rootfs")
    with ctr.events() as events:
        os.kill(supervisor, signal.SIGKILL)
        # containerd sees the shim's connection drop and runs the shim's `delete` action.
        exit_event = events.wait_for("/tasks/exit", container_id, timeout=20)
    assert exit_event.payload.get("exit_status") == 137, exit_event.line
    _eventually(lambda: processes_titled(f"wasmvisor-worker {ctr.namespace}/{container_id}"))
    _eventually(lambda: mounts_under(bundle))
    assert worker not in processes_titled("wasmvisor-worker")
    ctr.remove(container_id)
    again = ctr.run_container(image("hello"), container_id)
    assert (again.returncode, again.stdout) == (0, "hello from wasmvisor\n"), again.output


def _restart(containerd: PrivateContainerd) -> None:
    """Stop containerd alone (not its shims, unlike PrivateContainerd.stop), then start it again."""
    proc = containerd.process
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    containerd.start()


def test_containerd_restarted_under_running_guests_reconnects_to_the_supervisor(
    containerd: PrivateContainerd, ctr: Ctr, image: ImageRef, new_container_id: Callable[[str], str]
) -> None:
    first, second = new_container_id("a"), new_container_id("b")
    pids = {first: _run_detached(ctr, image, first), second: _run_detached(ctr, image, second)}
    supervisors = {t: _one(f"wasmvisor-shim {ctr.namespace}/{t}") for t in pids}

    _restart(containerd)

    tasks = ctr.tasks()
    assert {t: (tasks[t].pid, tasks[t].status) for t in pids} == {t: (p, "RUNNING") for t, p in pids.items()}
    assert {t: _one(f"wasmvisor-shim {ctr.namespace}/{t}") for t in pids} == supervisors
    with ctr.events() as events:
        assert ctr.kill(first, "SIGTERM").returncode == 0
        assert ctr.kill(second, "SIGKILL").returncode == 0
        statuses = {t: events.wait_for("/tasks/exit", t).payload.get("exit_status") for t in pids}
    assert statuses == {first: 143, second: 137}
    for task_id in pids:
        ctr.wait_for_task_status(task_id, "STOPPED")
        assert ctr.run("task", "rm", task_id, timeout=30).returncode == 0
        assert ctr.run("containers", "rm", task_id, timeout=30).returncode == 0
    _eventually(lambda: [p for p in supervisors.values() if os.path.exists(f"/proc/{p}")])
