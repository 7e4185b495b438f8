"""A group's supervisor between tasks, as `ctr run --rm` in a loop meets it: a `start` during its linger
is granted a claim and the supervisor stays for that task; once it has ended, the next `start`
launches a new supervisor on the same address, which the old one leaves alone."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from google.protobuf.empty_pb2 import Empty

from tests.e2e.host import is_alive
from tests.integration.harness import HELLO, Harness
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.supervisor.lifetime import LINGER_SECONDS
from wasmvisor.supervisor.shim import claim

POD = {"io.kubernetes.cri.sandbox-id": "pod1"}


def _run_hello(h: Harness, task_id: str, annotations: dict[str, str] | None = None) -> tuple[Path, int]:
    """start, Create, Start, Wait, Delete: the task's bundle and the supervisor's pid (no Shutdown yet)."""
    bundle = h.bundle(task_id, {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=annotations)
    c = h.client(h.start_shim(bundle, task_id))
    (bundle / "stdout").touch()
    h.call(c, "Create", pb.CreateTaskRequest(id=task_id, bundle=str(bundle), stdout=str(bundle / "stdout")),
           pb.CreateTaskResponse)
    h.call(c, "Start", pb.StartRequest(id=task_id), pb.StartResponse)
    assert h.call(c, "Wait", pb.WaitRequest(id=task_id), pb.WaitResponse).exit_status == 0
    assert (bundle / "stdout").read_bytes() == b"hello\n"
    h.call(c, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)
    return bundle, h.call(c, "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid


def _shutdown(h: Harness, address: str, task_id: str) -> None:
    h.call(h.client(address), "Shutdown", pb.ShutdownRequest(id=task_id), Empty)


def _gone(pid: int, path: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while (is_alive(pid) or os.path.exists(path)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not is_alive(pid) and not os.path.exists(path)


def test_a_start_during_the_linger_keeps_the_supervisor_past_it(harness: Harness) -> None:
    h = harness
    _, pid = _run_hello(h, "first", POD)
    _shutdown(h, h.addresses[0], "first")  # idle now: the linger runs
    bundle = h.bundle("second", {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=POD)
    address = h.start_shim(bundle, "second")  # its claim is granted
    assert address == h.addresses[0]
    time.sleep(LINGER_SECONDS + 0.5)  # the linger is over: the claim holds the supervisor
    c = h.client(address)
    (bundle / "stdout").touch()
    h.call(c, "Create", pb.CreateTaskRequest(id="second", bundle=str(bundle), stdout=str(bundle / "stdout")),
           pb.CreateTaskResponse)
    assert h.call(c, "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid == pid
    h.call(c, "Start", pb.StartRequest(id="second"), pb.StartResponse)
    assert h.call(c, "Wait", pb.WaitRequest(id="second"), pb.WaitResponse).exit_status == 0
    h.call(c, "Delete", pb.DeleteRequest(id="second"), pb.DeleteResponse)
    h.call(c, "Shutdown", pb.ShutdownRequest(id="second"), Empty)
    assert _gone(pid, address.removeprefix("unix://"))


def test_an_ended_supervisor_is_replaced_on_the_same_address_and_leaves_it_alone(harness: Harness) -> None:
    h = harness
    bundle, old = _run_hello(h, "again")
    path = h.addresses[0].removeprefix("unix://")
    _shutdown(h, h.addresses[0], "again")
    assert _gone(old, path), "the supervisor did not end after its linger"
    shutil.rmtree(bundle)  # as containerd does; the next task of that id gets a new bundle at the same path
    _, new = _run_hello(h, "again")
    assert h.addresses[1] == h.addresses[0] and new != old
    assert os.path.exists(path) and claim.ask(path, "again") == claim.GRANTED


def test_a_supervisor_refuses_claims_once_it_has_decided_to_end(harness: Harness) -> None:
    """SIGTERM ends a supervisor at once: from then on its socket file is gone, so a claim finds nothing."""
    h = harness
    _, pid = _run_hello(h, "term")
    path = h.addresses[0].removeprefix("unix://")
    assert claim.ask(path, "term") == claim.GRANTED
    os.kill(pid, 15)
    assert _gone(pid, path)
    assert claim.ask(path, "term") == claim.ABSENT
