"""The Task API of a real supervisor, called directly over ttrpc: states, events and error codes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import time

import pytest
from google.protobuf import any_pb2
from google.protobuf.empty_pb2 import Empty

from tests.integration.harness import EXIT_WITH, HELLO, SLEEPER, TASK, Harness, wat
from wasmvisor.errors import Code, RpcError
from wasmvisor.proto import ttrpc_pb2
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.supervisor.tasks.exec_service import PROCESS_TYPE_URL

POD = {"io.kubernetes.cri.sandbox-id": "pod1"}


def create(h: Harness, client, task_id: str, bundle, **kw) -> pb.CreateTaskResponse:  # type: ignore[no-untyped-def]
    out = bundle / "stdout"
    out.touch()
    req = pb.CreateTaskRequest(id=task_id, bundle=str(bundle), stdout=str(out), **kw)
    return h.call(client, "Create", req, pb.CreateTaskResponse)


def expect_error(h: Harness, client, method: str, req, code: Code, text: str = "") -> RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(RpcError) as info:
        h.call(client, method, req, Empty)
    assert info.value.code == code, info.value
    assert text in info.value.message
    return info.value


def pod_task(h: Harness, task_id: str, files: dict[str, bytes], args: list[str]):  # type: ignore[no-untyped-def]
    bundle = h.bundle(task_id, files, args, annotations=POD)
    client = h.client(h.start_shim(bundle, task_id))
    return bundle, client


def test_hello_goes_through_created_running_stopped_with_events_in_order(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "hello", {"hello.wasm": HELLO}, ["/hello.wasm"])
    created = create(h, c, "hello", bundle)
    assert created.pid > 0
    state = h.call(c, "State", pb.StateRequest(id="hello"), pb.StateResponse)
    assert state.status == types_pb.CREATED and state.pid == created.pid
    connect = h.call(c, "Connect", pb.ConnectRequest(id="hello"), pb.ConnectResponse)
    assert connect.task_pid == created.pid and connect.shim_pid != created.pid
    pids = h.call(c, "Pids", pb.PidsRequest(id="hello"), pb.PidsResponse)
    assert [p.pid for p in pids.processes] == [created.pid]

    started = h.call(c, "Start", pb.StartRequest(id="hello"), pb.StartResponse)
    assert started.pid == created.pid
    waited = h.call(c, "Wait", pb.WaitRequest(id="hello"), pb.WaitResponse)
    assert waited.exit_status == 0 and waited.exited_at.seconds > 1_700_000_000
    state = h.call(c, "State", pb.StateRequest(id="hello"), pb.StateResponse)
    assert state.status == types_pb.STOPPED and state.exit_status == 0
    assert (bundle / "stdout").read_bytes() == b"hello\n"

    deleted = h.call(c, "Delete", pb.DeleteRequest(id="hello"), pb.DeleteResponse)
    assert deleted.pid == created.pid and deleted.exit_status == 0
    expect_error(h, c, "State", pb.StateRequest(id="hello"), Code.NOT_FOUND, "hello")
    time.sleep(0.3)
    assert h.events.topics("hello") == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert not (bundle / "init.pid").exists()
    assert not os.path.exists(f"/proc/{created.pid}")


def test_wait_called_before_start_blocks_until_the_exit(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "early", {"x.wasm": wat(EXIT_WITH.format(code=42))}, ["/x.wasm"])
    create(h, c, "early", bundle)
    md = {"containerd-namespace-ttrpc": "itest"}
    waiting = asyncio.run_coroutine_threadsafe(
        c.call(TASK, "Wait", pb.WaitRequest(id="early"), pb.WaitResponse, metadata=md), h.loop
    )
    time.sleep(0.3)
    assert not waiting.done()
    h.call(c, "Start", pb.StartRequest(id="early"), pb.StartResponse)
    assert waiting.result(10).exit_status == 42
    h.call(c, "Delete", pb.DeleteRequest(id="early"), pb.DeleteResponse)


@pytest.mark.parametrize(("signo", "status"), [(signal.SIGTERM, 143), (signal.SIGKILL, 137), (signal.SIGINT, 130)])
def test_kill_ends_a_sleeping_guest_with_128_plus_signal(harness: Harness, signo: int, status: int) -> None:
    h = harness
    tid = f"sleep-{signo}"
    bundle, c = pod_task(h, tid, {"s.wasm": SLEEPER}, ["/s.wasm"])
    create(h, c, tid, bundle)
    h.call(c, "Start", pb.StartRequest(id=tid), pb.StartResponse)
    time.sleep(0.2)
    state = h.call(c, "State", pb.StateRequest(id=tid), pb.StateResponse)
    assert state.status == types_pb.RUNNING
    expect_error(h, c, "Delete", pb.DeleteRequest(id=tid), Code.FAILED_PRECONDITION, "RUNNING")
    h.call(c, "Kill", pb.KillRequest(id=tid, signal=signo), Empty)
    assert h.call(c, "Wait", pb.WaitRequest(id=tid), pb.WaitResponse).exit_status == status
    expect_error(h, c, "Kill", pb.KillRequest(id=tid, signal=9), Code.NOT_FOUND, "already finished")
    assert h.call(c, "Delete", pb.DeleteRequest(id=tid), pb.DeleteResponse).exit_status == status


def test_bad_requests_get_clear_codes_and_the_supervisor_keeps_serving(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "good", {"hello.wasm": HELLO}, ["/hello.wasm"])
    create(h, c, "good", bundle)
    expect_error(h, c, "Create", pb.CreateTaskRequest(id="good", bundle=str(bundle)), Code.ALREADY_EXISTS, "good")
    for method, req in [
        ("State", pb.StateRequest(id="nope")),
        ("Start", pb.StartRequest(id="nope")),
        ("Kill", pb.KillRequest(id="nope", signal=9)),
        ("Delete", pb.DeleteRequest(id="nope")),
        ("Wait", pb.WaitRequest(id="nope")),
        ("Pids", pb.PidsRequest(id="nope")),
    ]:
        expect_error(h, c, method, req, Code.NOT_FOUND, "nope")
    expect_error(h, c, "State", pb.StateRequest(id="good", exec_id="e1"), Code.NOT_FOUND, "e1")
    process = any_pb2.Any(type_url=PROCESS_TYPE_URL, value=b'{"args": ["/hello.wasm"]}')
    expect_error(h, c, "Exec", pb.ExecProcessRequest(id="good", exec_id="e1", spec=process), Code.FAILED_PRECONDITION,
                 "exec 'e1' in task good: the task is CREATED, not RUNNING")
    expect_error(h, c, "Pause", pb.PauseRequest(id="good"), Code.UNIMPLEMENTED)
    expect_error(h, c, "Checkpoint", pb.CheckpointTaskRequest(id="good"), Code.UNIMPLEMENTED)
    expect_error(h, c, "ResizePty", pb.ResizePtyRequest(id="good"), Code.INVALID_ARGUMENT,
                 "resizepty good: the process has no terminal")
    expect_error(h, c, "Update", pb.UpdateTaskRequest(id="good"), Code.UNIMPLEMENTED)

    tty_bundle = h.bundle("tty", {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=POD)
    expect_error(h, c, "Create", pb.CreateTaskRequest(id="tty", bundle=str(tty_bundle), terminal=True),
                 Code.INVALID_ARGUMENT, "terminal=true: /hello.wasm is a wasm module, and a wasm guest cannot")
    cases = {
        "missing": ({}, ["/app.wasm"], "/app.wasm"),
        # Plain text: a `#!` script or an ELF would run natively (the native executor).
        "notwasm": ({"app.wasm": b"echo hi\n"}, ["/app.wasm"], "not a wasm file"),
        "malformed": ({"app.wasm": b"\0asm\x01\0\0\0\xff\xff"}, ["/app.wasm"], "/app.wasm"),
        "noexport": ({"hello.wasm": HELLO}, ["/hello.wasm#nothere"], "nothere"),
    }
    for tid, (files, args, text) in cases.items():
        b = h.bundle(tid, files, args, annotations=POD)
        err = expect_error(h, c, "Create", pb.CreateTaskRequest(id=tid, bundle=str(b)), Code.INVALID_ARGUMENT)
        assert text in err.message, err.message
        expect_error(h, c, "State", pb.StateRequest(id=tid), Code.NOT_FOUND)

    # garbage bytes and an oversized frame on fresh connections of the same supervisor
    path = h.addresses[0].removeprefix("unix://")
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(path)
        raw.sendall(os.urandom(64))
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(path)
        size = 5 * 1024 * 1024
        raw.sendall(struct.pack(">IIBB", size, 1, 1, 0) + b"\0" * size)
        header = _recv_exact(raw, 10)
        length, sid, mtype, _ = struct.unpack(">IIBB", header)
        resp = ttrpc_pb2.Response.FromString(_recv_exact(raw, length))
        assert (sid, mtype, resp.status.code) == (1, 2, Code.RESOURCE_EXHAUSTED)

    h.call(c, "Start", pb.StartRequest(id="good"), pb.StartResponse)
    expect_error(h, c, "Start", pb.StartRequest(id="good"), Code.FAILED_PRECONDITION, "invalid state transition")
    assert h.call(c, "Wait", pb.WaitRequest(id="good"), pb.WaitResponse).exit_status == 0
    assert (bundle / "stdout").read_bytes() == b"hello\n"
    h.call(c, "Delete", pb.DeleteRequest(id="good"), pb.DeleteResponse)


def test_shutdown_waits_for_the_last_task_then_removes_the_socket(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "last", {"hello.wasm": HELLO}, ["/hello.wasm"])
    path = h.addresses[0].removeprefix("unix://")
    create(h, c, "last", bundle)
    h.call(c, "Shutdown", pb.ShutdownRequest(id="last"), Empty)
    time.sleep(0.2)
    assert os.path.exists(path)
    h.call(c, "Start", pb.StartRequest(id="last"), pb.StartResponse)
    h.call(c, "Wait", pb.WaitRequest(id="last"), pb.WaitResponse)
    h.call(c, "Delete", pb.DeleteRequest(id="last"), pb.DeleteResponse)
    h.call(c, "Shutdown", pb.ShutdownRequest(id="last"), Empty)
    deadline = time.monotonic() + 5
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(path)
    assert h.events.topics("last")[-1] == "/tasks/delete"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


def test_a_task_that_arrives_right_after_shutdown_keeps_the_supervisor(harness: Harness) -> None:
    """The race of two `ctr run --rm` in one pod: the first task's Shutdown comes just after the
    second task's `start` found the supervisor alive. The supervisor must stay for that Create."""
    h = harness
    bundle_a, c = pod_task(h, "first", {"hello.wasm": HELLO}, ["/hello.wasm"])
    create(h, c, "first", bundle_a)
    h.call(c, "Start", pb.StartRequest(id="first"), pb.StartResponse)
    h.call(c, "Wait", pb.WaitRequest(id="first"), pb.WaitResponse)
    h.call(c, "Delete", pb.DeleteRequest(id="first"), pb.DeleteResponse)
    bundle_b, c2 = pod_task(h, "second", {"hello.wasm": HELLO}, ["/hello.wasm"])
    assert h.addresses[0] == h.addresses[1]
    h.call(c, "Shutdown", pb.ShutdownRequest(id="first"), Empty)
    time.sleep(0.2)
    create(h, c2, "second", bundle_b)
    time.sleep(1.5)  # past the linger: the supervisor must still serve "second"
    h.call(c2, "Start", pb.StartRequest(id="second"), pb.StartResponse)
    assert h.call(c2, "Wait", pb.WaitRequest(id="second"), pb.WaitResponse).exit_status == 0
    assert (bundle_b / "stdout").read_bytes() == b"hello\n"
    h.call(c2, "Delete", pb.DeleteRequest(id="second"), pb.DeleteResponse)
