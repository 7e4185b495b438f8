"""Exec through the Task API in-process (fake instances, no process): Exec, then Start, State,
Wait, Kill and Delete with an exec id; its events; its exit next to the task's."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import any_pb2

from wasmvisor import errors
from wasmvisor.proto.containerd.events import task_pb2 as ev
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.supervisor.tasks.exec_service import PROCESS_TYPE_URL, parse_exec_spec

from .fakes import run
from .test_service import Harness


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def exec_request(task_id: str, exec_id: str, args: list[str], **fields: Any) -> pb.ExecProcessRequest:
    spec = any_pb2.Any(type_url=PROCESS_TYPE_URL, value=orjson.dumps({"args": args, "cwd": "/"}))
    return pb.ExecProcessRequest(id=task_id, exec_id=exec_id, spec=spec, **fields)


async def running_task(h: Harness, task_id: str = "t") -> None:
    await h.create(task_id)
    await h.start(task_id)


def test_an_exec_runs_exits_and_is_deleted_while_its_task_runs_on(h: Harness) -> None:
    async def scenario() -> None:
        await running_task(h)
        await h.call("Exec", exec_request("t", "e1", ["/bin/sh", "-c", "exit 3"], stdout="/run/fifo/e1-out"))
        exec_inst = h.instances.made["t"].execs["e1"]
        assert h.instances.made["t"].exec_processes["e1"]["args"] == ["/bin/sh", "-c", "exit 3"]
        state = await h.call("State", pb.StateRequest(id="t", exec_id="e1"))
        assert (state.id, state.status, state.stdout) == ("e1", types_pb.CREATED, "/run/fifo/e1-out")
        assert (await h.call("Start", pb.StartRequest(id="t", exec_id="e1"))).pid == exec_inst.pid
        assert (await h.call("State", pb.StateRequest(id="t", exec_id="e1"))).status == types_pb.RUNNING
        exec_inst.end(3)
        assert (await h.call("Wait", pb.WaitRequest(id="t", exec_id="e1"))).exit_status == 3
        deleted = await h.call("Delete", pb.DeleteRequest(id="t", exec_id="e1"))
        assert (deleted.pid, deleted.exit_status) == (exec_inst.pid, 3)
        with pytest.raises(errors.NotFound, match="exec 'e1' of task t: not found"):
            await h.call("State", pb.StateRequest(id="t", exec_id="e1"))
        assert (await h.state("t")).status == types_pb.RUNNING

    run(scenario())
    assert h.events.topics("t") == ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
                                    "/tasks/exit"]
    exit = h.events.events[-1][1]
    assert isinstance(exit, ev.TaskExit) and (exit.container_id, exit.id, exit.exit_status) == ("t", "e1", 3)


def test_exec_ids_are_unique_per_task(h: Harness) -> None:
    async def scenario() -> None:
        await running_task(h)
        await h.call("Exec", exec_request("t", "e1", ["/a.wasm"]))
        with pytest.raises(errors.AlreadyExists, match="exec 'e1' of task t: already exists"):
            await h.call("Exec", exec_request("t", "e1", ["/a.wasm"]))

    run(scenario())


def test_exec_needs_a_running_task(h: Harness) -> None:
    async def scenario() -> None:
        await h.create("t")
        with pytest.raises(errors.FailedPrecondition, match="exec 'e1' in task t: the task is CREATED, not RUNNING"):
            await h.call("Exec", exec_request("t", "e1", ["/a.wasm"]))
        await h.start("t")
        h.instances.made["t"].end(0)
        await h.call("Wait", pb.WaitRequest(id="t"))
        with pytest.raises(errors.FailedPrecondition, match="the task is STOPPED, not RUNNING"):
            await h.call("Exec", exec_request("t", "e1", ["/a.wasm"]))

    run(scenario())


def test_the_tasks_exit_ends_its_running_execs(h: Harness) -> None:
    async def scenario() -> None:
        await running_task(h)
        await h.call("Exec", exec_request("t", "e1", ["/a.wasm"]))
        await h.call("Start", pb.StartRequest(id="t", exec_id="e1"))
        await h.call("Kill", pb.KillRequest(id="t", signal=signal.SIGKILL))
        waited = await h.call("Wait", pb.WaitRequest(id="t", exec_id="e1"))
        assert waited.exit_status == 128 + signal.SIGKILL
        with pytest.raises(errors.NotFound, match="process already finished"):
            await h.call("Kill", pb.KillRequest(id="t", exec_id="e1", signal=signal.SIGTERM))

    run(scenario())


def test_a_running_exec_cannot_be_deleted_until_it_has_ended(h: Harness) -> None:
    async def scenario() -> None:
        await running_task(h)
        await h.call("Exec", exec_request("t", "e1", ["/a.wasm"]))
        await h.call("Start", pb.StartRequest(id="t", exec_id="e1"))
        with pytest.raises(errors.FailedPrecondition, match="delete exec 'e1' of task t: the process is still running"):
            await h.call("Delete", pb.DeleteRequest(id="t", exec_id="e1"))
        await h.call("Kill", pb.KillRequest(id="t", exec_id="e1", signal=signal.SIGTERM))
        assert (await h.call("Wait", pb.WaitRequest(id="t", exec_id="e1"))).exit_status == 128 + signal.SIGTERM
        assert (await h.state("t")).status == types_pb.RUNNING

    run(scenario())


def test_an_exec_spec_of_another_type_or_not_json_is_invalid() -> None:
    with pytest.raises(errors.InvalidArgument, match="spec has type 'example.com/Other'"):
        parse_exec_spec("example.com/Other", b"{}", "exec 'e1' in task t")
    with pytest.raises(errors.InvalidArgument, match="exec 'e1' in task t: the process spec is not valid JSON"):
        parse_exec_spec(PROCESS_TYPE_URL, b"{", "exec 'e1' in task t")
    assert parse_exec_spec(PROCESS_TYPE_URL, b'{"args": ["x"]}', "e") == {"args": ["x"]}
