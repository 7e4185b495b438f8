"""Exec through the supervisor's Task API without containerd (issue 12): a wasm module exec'd into a
running wasm task writes to its own stdout and exits without ending the task (over ttrpc and gRPC); a
program that is not wasm is refused by name; the task's kill ends a running exec with 137."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path

import grpc
from google.protobuf import any_pb2
from google.protobuf.empty_pb2 import Empty

from tests.integration.harness import HELLO, SLEEPER, Harness
from wasmvisor.errors import Code
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.supervisor.tasks.exec_service import PROCESS_TYPE_URL

from .test_grpc_transport import GrpcTask, _start_grpc_shim
from .test_task_api import create, expect_error, pod_task


def exec_request(exec_id: str, args: list[str], stdout: Path) -> pb.ExecProcessRequest:
    stdout.touch()
    process = {"args": args, "env": ["PATH=/", "WHO=exec"], "cwd": "/"}
    spec = any_pb2.Any(type_url=PROCESS_TYPE_URL, value=json.dumps(process).encode())
    return pb.ExecProcessRequest(id="web", exec_id=exec_id, stdout=str(stdout), spec=spec)


def running_web(h: Harness):  # type: ignore[no-untyped-def]
    bundle, c = pod_task(h, "web", {"sleep.wasm": SLEEPER, "hello.wasm": HELLO}, ["/sleep.wasm"])
    create(h, c, "web", bundle)
    h.call(c, "Start", pb.StartRequest(id="web"), pb.StartResponse)
    return bundle, c


def test_a_wasm_exec_prints_exits_and_leaves_its_task_running(harness: Harness) -> None:
    h = harness
    bundle, c = running_web(h)

    h.call(c, "Exec", exec_request("e1", ["/hello.wasm"], bundle / "e1-out"), Empty)
    started = h.call(c, "Start", pb.StartRequest(id="web", exec_id="e1"), pb.StartResponse)
    waited = h.call(c, "Wait", pb.WaitRequest(id="web", exec_id="e1"), pb.WaitResponse)
    deleted = h.call(c, "Delete", pb.DeleteRequest(id="web", exec_id="e1"), pb.DeleteResponse)

    assert waited.exit_status == 0
    assert (bundle / "e1-out").read_text() == "hello\n"
    assert (deleted.pid, deleted.exit_status) == (started.pid, 0)
    assert h.call(c, "State", pb.StateRequest(id="web"), pb.StateResponse).status == types_pb.RUNNING
    expect_error(h, c, "State", pb.StateRequest(id="web", exec_id="e1"), Code.NOT_FOUND, "exec 'e1' of task web")


def test_an_exec_that_is_not_wasm_is_refused_by_name(harness: Harness) -> None:
    h = harness
    bundle, c = running_web(h)

    expect_error(h, c, "Exec", exec_request("e1", ["/bin/sh"], bundle / "e1-out"), Code.INVALID_ARGUMENT,
                 "exec /bin/sh in wasm container web: not a wasm module")
    assert h.call(c, "State", pb.StateRequest(id="web"), pb.StateResponse).status == types_pb.RUNNING


def test_the_tasks_kill_ends_its_running_exec(harness: Harness) -> None:
    h = harness
    bundle, c = running_web(h)
    h.call(c, "Exec", exec_request("long", ["/sleep.wasm"], bundle / "long-out"), Empty)
    h.call(c, "Start", pb.StartRequest(id="web", exec_id="long"), pb.StartResponse)

    h.call(c, "Kill", pb.KillRequest(id="web", signal=signal.SIGKILL), Empty)
    waited = h.call(c, "Wait", pb.WaitRequest(id="web", exec_id="long"), pb.WaitResponse)

    assert waited.exit_status == 128 + signal.SIGKILL
    assert h.call(c, "Wait", pb.WaitRequest(id="web"), pb.WaitResponse).exit_status == 128 + signal.SIGKILL


def test_exec_runs_over_grpc_too(harness: Harness) -> None:
    h = harness
    bundle = h.bundle("gweb", {"sleep.wasm": SLEEPER, "hello.wasm": HELLO}, ["/sleep.wasm"])
    task = GrpcTask(_start_grpc_shim(h, bundle, "gweb")["address"])
    try:
        task.call("Create", pb.CreateTaskRequest(id="gweb", bundle=str(bundle)), pb.CreateTaskResponse)
        task.call("Start", pb.StartRequest(id="gweb"), pb.StartResponse)
        request = exec_request("e1", ["/hello.wasm"], bundle / "e1-out")
        request.id = "gweb"
        task.call("Exec", request, Empty)
        task.call("Start", pb.StartRequest(id="gweb", exec_id="e1"), pb.StartResponse)
        waited = task.call("Wait", pb.WaitRequest(id="gweb", exec_id="e1"), pb.WaitResponse)
        assert (waited.exit_status, (bundle / "e1-out").read_text()) == (0, "hello\n")
        assert task.call("State", pb.StateRequest(id="gweb"), pb.StateResponse).status == types_pb.RUNNING
        task.call("Kill", pb.KillRequest(id="gweb", signal=signal.SIGKILL), Empty)
        task.call("Wait", pb.WaitRequest(id="gweb"), pb.WaitResponse)
        task.call("Delete", pb.DeleteRequest(id="gweb"), pb.DeleteResponse)
    finally:
        with contextlib.suppress(grpc.RpcError):
            task.call("Shutdown", pb.ShutdownRequest(id="gweb"), Empty)
        task.channel.close()
