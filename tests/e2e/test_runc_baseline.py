"""The e2e infrastructure itself, proved with runc: private containerd, image import, `ctr run`."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import RUNC_RUNTIME, Ctr
from tests.e2e.host import mounts_under


def test_busybox_echo_under_runc_prints_hi(ctr: Ctr, image: Callable[[str], str], container_id: str) -> None:
    result = ctr.run_container(image("busybox"), container_id, "echo", "hi", runtime=RUNC_RUNTIME)

    assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "")
    assert container_id not in ctr.containers()


def test_runc_exit_code_and_events_come_through(
    ctr: Ctr, image: Callable[[str], str], container_id: str, containerd: PrivateContainerd
) -> None:
    # With containerd 2.1.9 the runc container's /tasks/delete sometimes never arrives when other
    # modules ran first on the same instance (seen in about half of full-suite runs; never alone).
    # It is runc's and containerd's event, not ours: on 2.x it is optional here.
    delete_is_reliable = not containerd.line.startswith("2.")
    with ctr.events() as events:
        result = ctr.run_container(image("busybox"), container_id, "sh", "-c", "exit 42", runtime=RUNC_RUNTIME)
        events.wait_for("/tasks/delete" if delete_is_reliable else "/tasks/exit", container_id)

    assert result.returncode == 42
    topics = [t for t in events.topics(container_id) if t.startswith("/tasks/")]
    expected = ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert (topics == expected) if delete_is_reliable else (topics in (expected, expected[:3])), topics
    exit_event = next(e for e in events.events(container_id) if e.topic == "/tasks/exit")
    assert exit_event.payload["exit_status"] == 42
    assert mounts_under(containerd.bundle_dir(ctr.namespace, container_id)) == []


def test_runc_stdin_and_detached_kill(
    ctr: Ctr, image: Callable[[str], str], new_container_id: Callable[[str], str]
) -> None:
    piped = ctr.run_container(image("busybox"), new_container_id("cat"), "cat", runtime=RUNC_RUNTIME, input="in\n")
    assert (piped.returncode, piped.stdout) == (0, "in\n")

    detached = new_container_id("sleep")
    started = ctr.run_container(
        image("busybox"), detached, "sleep", "60", runtime=RUNC_RUNTIME, rm=False, flags=["-d", "--null-io"]
    )
    assert started.returncode == 0, started.output
    ctr.wait_for_task_status(detached, "RUNNING")
    ctr.kill(detached, "SIGKILL")
    ctr.wait_for_task_status(detached, "STOPPED")
    ctr.remove(detached)
    assert detached not in ctr.containers()
