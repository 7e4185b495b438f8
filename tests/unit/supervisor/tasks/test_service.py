"""The Task API handlers in-process: requests in, responses or typed errors out, over a registry
of fake instances (no process, no containerd, no root: no linux section means no cgroup, no
rootfs mounts in the request means no mount)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2
from google.protobuf.empty_pb2 import Empty

from wasmvisor import errors
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.supervisor.lifetime import Lifetime
from wasmvisor.supervisor.rpc.service import Call
from wasmvisor.supervisor.tasks.events import ZERO_TIME_SECONDS
from wasmvisor.supervisor.tasks.service import TaskService
from wasmvisor.version import VERSION

from .fakes import FakeInstances, RecordingPublisher, new_registry, run, turns, write_bundle


def _call_later(delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
    return asyncio.get_running_loop().call_later(delay, callback)


class Harness:
    """A TaskService over fake instances and a real Lifetime (no linger); `shutdowns` counts its ends."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.instances = FakeInstances()
        self.events = RecordingPublisher()
        self.registry = new_registry(self.instances, self.events)
        self.shutdowns = 0
        self.shutdown_requested = asyncio.Event()
        self.released = 0
        self.lifetime = Lifetime(lambda: len(self.registry), release=self._release, end=self._request_shutdown,
                                 call_later=_call_later, linger=0.0)
        self.service = TaskService(self.registry, self.lifetime)

    def _release(self) -> None:
        self.released += 1

    def _request_shutdown(self) -> None:
        self.shutdowns += 1
        self.shutdown_requested.set()

    def bundle(self, task_id: str) -> str:
        return str(write_bundle(self.tmp_path / task_id))

    async def call(self, method: str, request: Any) -> Any:
        return await getattr(self.service, method)(request, Call("containerd.task.v2.Task", method))

    async def create(self, task_id: str, **fields: Any) -> pb.CreateTaskResponse:
        fields.setdefault("bundle", self.bundle(task_id))
        return await self.call("Create", pb.CreateTaskRequest(id=task_id, **fields))

    async def start(self, task_id: str) -> pb.StartResponse:
        return await self.call("Start", pb.StartRequest(id=task_id))

    async def state(self, task_id: str) -> pb.StateResponse:
        return await self.call("State", pb.StateRequest(id=task_id))


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_a_task_is_created_started_waited_for_and_deleted(h: Harness) -> None:
    async def scenario() -> None:
        created = await h.create("t", stdout="/run/fifo/out", stderr="/run/fifo/err")
        inst = h.instances.made["t"]
        assert created.pid == inst.pid
        state = await h.state("t")
        assert (state.id, state.pid, state.status) == ("t", inst.pid, types_pb.CREATED)
        assert (state.bundle, state.stdout, state.stderr) == (str(h.tmp_path / "t"), "/run/fifo/out", "/run/fifo/err")
        assert state.exited_at.seconds == ZERO_TIME_SECONDS
        waiting = asyncio.ensure_future(h.call("Wait", pb.WaitRequest(id="t")))
        assert (await h.start("t")).pid == inst.pid
        assert (await h.state("t")).status == types_pb.RUNNING
        await turns()
        assert not waiting.done()
        inst.end(7)
        waited = await waiting
        assert waited.exit_status == 7
        assert waited.exited_at.ToNanoseconds() == inst.exit.at_ns  # type: ignore[union-attr]
        state = await h.state("t")
        assert (state.status, state.exit_status) == (types_pb.STOPPED, 7)
        assert state.exited_at == waited.exited_at
        deleted = await h.call("Delete", pb.DeleteRequest(id="t"))
        assert (deleted.pid, deleted.exit_status, deleted.exited_at) == (inst.pid, 7, waited.exited_at)
        with pytest.raises(errors.NotFound, match="task t: not found"):
            await h.state("t")

    run(scenario())
    assert h.events.topics("t") == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert not os.path.exists(h.tmp_path / "t" / "init.pid")


def options(type_url: str) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=b"")


@pytest.mark.parametrize(("fields", "message"), [
    ({"id": ""}, "create: task id is empty"),
    ({"bundle": "bundles/t"}, "create t: bundle path 'bundles/t' is not absolute"),
    ({"bundle": ""}, "create t: bundle path '' is not absolute"),
    ({"checkpoint": "/cp"}, "create t: restoring from a checkpoint is not supported"),
    ({"parent_checkpoint": "/cp"}, "create t: restoring from a checkpoint is not supported"),
    ({"options": options("types.example.com/other.v1.Options")},
     "create t: runtime options of type 'other.v1.Options' are not understood"),
    ({"stdout": "binary:///usr/bin/logger"}, "create t: stdout 'binary:///usr/bin/logger': only FIFO paths"),
    ({"bundle": "/nonexistent/bundle"}, "/nonexistent/bundle/config.json: missing"),
], ids=["empty-id", "relative-bundle", "no-bundle", "checkpoint", "parent-checkpoint",
        "unknown-options", "binary-stdout", "no-config"])
def test_a_create_that_cannot_be_served_is_invalid_argument_and_makes_nothing(
    h: Harness, fields: dict[str, Any], message: str
) -> None:
    task_id = fields.pop("id", "t")
    fields.setdefault("bundle", h.bundle("t"))

    async def scenario() -> None:
        with pytest.raises(errors.InvalidArgument, match=message):
            await h.call("Create", pb.CreateTaskRequest(id=task_id, **fields))

    run(scenario())
    assert h.instances.made == {} and h.events.events == [] and len(h.registry) == 0


@pytest.mark.parametrize("kind", ["runtimeoptions.v1.Options", "containerd.runc.v1.Options"])
def test_the_runtime_options_containerd_sends_are_accepted(h: Harness, kind: str) -> None:
    async def scenario() -> None:
        await h.create("t", options=options(f"type.googleapis.com/{kind}"), stdin="file:///dev/null")

    run(scenario())
    assert "t" in h.instances.made


def test_a_second_create_of_an_id_is_already_exists(h: Harness) -> None:
    async def scenario() -> None:
        await h.create("t")
        with pytest.raises(errors.AlreadyExists, match="task t: already exists"):
            await h.create("t")

    run(scenario())


TASK_CALLS = [
    ("Start", pb.StartRequest), ("State", pb.StateRequest), ("Wait", pb.WaitRequest), ("Kill", pb.KillRequest),
    ("Delete", pb.DeleteRequest), ("Pids", pb.PidsRequest), ("CloseIO", pb.CloseIORequest),
    ("Pause", pb.PauseRequest), ("Resume", pb.ResumeRequest), ("Update", pb.UpdateTaskRequest),
    ("Stats", pb.StatsRequest), ("Exec", pb.ExecProcessRequest), ("Checkpoint", pb.CheckpointTaskRequest),
    ("ResizePty", pb.ResizePtyRequest),
]


@pytest.mark.parametrize(("method", "request_type"), TASK_CALLS, ids=[m for m, _ in TASK_CALLS])
def test_a_call_for_an_unknown_task_is_not_found(h: Harness, method: str, request_type: Any) -> None:
    async def scenario() -> None:
        with pytest.raises(errors.NotFound, match="task nope: not found"):
            await h.call(method, request_type(id="nope"))

    run(scenario())


@pytest.mark.parametrize(("method", "request_type"), [c for c in TASK_CALLS if c[0] != "Exec"],
                         ids=[m for m, _ in TASK_CALLS if m != "Exec"])
def test_a_call_without_a_task_id_is_invalid_argument(h: Harness, method: str, request_type: Any) -> None:
    async def scenario() -> None:
        with pytest.raises(errors.InvalidArgument, match=f"{method.lower()}: task id is empty"):
            await h.call(method, request_type(id=""))

    run(scenario())


@pytest.mark.parametrize(("method", "request_type"), [
    ("Start", pb.StartRequest), ("State", pb.StateRequest), ("Kill", pb.KillRequest), ("Delete", pb.DeleteRequest),
    ("Wait", pb.WaitRequest),
])
def test_an_exec_process_is_not_found(h: Harness, method: str, request_type: Any) -> None:
    async def scenario() -> None:
        await h.create("t")
        with pytest.raises(errors.NotFound, match="exec 'e1' of task t: not found"):
            await h.call(method, request_type(id="t", exec_id="e1"))
        assert (await h.state("t")).status == types_pb.CREATED

    run(scenario())


def test_transitions_that_the_state_machine_refuses_are_failed_precondition(h: Harness) -> None:
    async def scenario() -> None:
        await h.create("t")
        await h.start("t")
        with pytest.raises(errors.FailedPrecondition, match="invalid state transition: RUNNING => STARTING"):
            await h.start("t")
        with pytest.raises(errors.FailedPrecondition, match="invalid state transition: RUNNING => DELETING"):
            await h.call("Delete", pb.DeleteRequest(id="t"))
        h.instances.made["t"].end(0)
        await h.call("Wait", pb.WaitRequest(id="t"))
        with pytest.raises(errors.FailedPrecondition, match="invalid state transition: STOPPED => STARTING"):
            await h.start("t")

    run(scenario())


def test_kill_ends_a_running_task_with_128_plus_the_signal(h: Harness) -> None:
    async def scenario() -> None:
        await h.create("t")
        await h.start("t")
        with pytest.raises(errors.InvalidArgument, match="kill t: invalid signal 0"):
            await h.call("Kill", pb.KillRequest(id="t", signal=0))
        await h.call("Kill", pb.KillRequest(id="t", signal=signal.SIGTERM))
        assert (await h.call("Wait", pb.WaitRequest(id="t"))).exit_status == 128 + signal.SIGTERM
        with pytest.raises(errors.NotFound, match="process already finished"):
            await h.call("Kill", pb.KillRequest(id="t", signal=signal.SIGKILL))

    run(scenario())
    assert h.events.topics("t") == ["/tasks/create", "/tasks/start", "/tasks/exit"]


def test_a_created_task_can_be_deleted_unstarted(h: Harness) -> None:
    async def scenario() -> None:
        await h.create("t")
        deleted = await h.call("Delete", pb.DeleteRequest(id="t"))
        assert deleted.exit_status == 128 + signal.SIGKILL

    run(scenario())
    assert h.events.topics("t") == ["/tasks/create", "/tasks/delete"]


@pytest.mark.parametrize(("method", "request_type", "message"), [
    ("Pause", pb.PauseRequest, "pause t: the task has no cgroup"),
    ("Resume", pb.ResumeRequest, "resume t: the task has no cgroup"),
    ("Update", pb.UpdateTaskRequest, "update t: the task has no cgroup"),
    ("Stats", pb.StatsRequest, "stats t: the task has no cgroup"),
    ("Checkpoint", pb.CheckpointTaskRequest, "checkpoint: wasmvisor cannot checkpoint a task"),
])
def test_what_wasmvisor_cannot_do_is_unimplemented(h: Harness, method: str, request_type: Any,
                                                   message: str) -> None:
    async def scenario() -> None:
        await h.create("t")
        await h.start("t")
        request = request_type(id="t")
        with pytest.raises(errors.Unimplemented, match=message):
            await h.call(method, request)
        assert (await h.state("t")).status == types_pb.RUNNING

    run(scenario())


def test_pids_connect_and_closeio(h: Harness) -> None:
    async def scenario() -> None:
        created = await h.create("t")
        pids = await h.call("Pids", pb.PidsRequest(id="t"))
        assert [p.pid for p in pids.processes] == [created.pid]
        assert await h.call("CloseIO", pb.CloseIORequest(id="t")) == Empty()
        connected = await h.call("Connect", pb.ConnectRequest(id="t"))
        assert (connected.shim_pid, connected.task_pid, connected.version) == (os.getpid(), created.pid, VERSION)
        assert (await h.call("Connect", pb.ConnectRequest(id="nope"))).task_pid == 0

    run(scenario())


def test_shutdown_ends_the_supervisor_only_once_no_task_is_left(h: Harness) -> None:
    async def scenario() -> None:
        await h.create("t")
        await h.call("Shutdown", pb.ShutdownRequest(id="t"))
        await turns()
        assert h.shutdowns == 0, "a task remains"
        await h.call("Delete", pb.DeleteRequest(id="t"))
        await h.call("Shutdown", pb.ShutdownRequest(id="t"))
        await h.shutdown_requested.wait()

    run(scenario())
    assert (h.shutdowns, h.released) == (1, 1)
