"""The Task API handlers (containerd.task.v2.Task / v3.Task), written once for every transport.

Each handler decodes its request into registry calls and encodes the answer; state, exits and
events live in the registry (registry.py). Errors are raised as ShimErrors and mapped by the
transport.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

from google.protobuf.empty_pb2 import Empty

from wasmvisor import errors, logs
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.spec import load_spec
from wasmvisor.supervisor.rpc.service import Call
from wasmvisor.supervisor.tasks import mounts, runtime_options
from wasmvisor.supervisor.tasks.events import timestamp
from wasmvisor.supervisor.tasks.exec_service import ExecHandlers
from wasmvisor.supervisor.tasks.registry import TaskRegistry
from wasmvisor.supervisor.tasks.state import Status
from wasmvisor.supervisor.tasks.task import CreateOpts, Task, TaskIO
from wasmvisor.version import VERSION

log = logging.getLogger(__name__)

_STATUS = {
    Status.CREATED: types_pb.CREATED,
    Status.STARTING: types_pb.CREATED,
    Status.RUNNING: types_pb.RUNNING,
    Status.PAUSED: types_pb.PAUSED,
    Status.STOPPED: types_pb.STOPPED,
    Status.DELETING: types_pb.STOPPED,
}


def _require_id(method: str, task_id: str) -> None:
    if not task_id:
        raise errors.InvalidArgument(f"{method}: task id is empty")


class Lifetime(Protocol):
    """What the Task API tells the supervisor's lifetime (supervisor/lifetime.py): a claimed task's
    Create has come; containerd has asked for Shutdown after a task."""

    def arrived(self, task_id: str) -> None: ...

    def shutdown(self, task_id: str) -> None: ...


class TaskService:
    """containerd.task.v2.Task served from a TaskRegistry."""

    def __init__(self, registry: TaskRegistry, lifetime: Lifetime) -> None:
        self.registry = registry
        self.lifetime = lifetime
        self.execs = ExecHandlers(registry)
        """The answers for requests that name an exec (exec_service.py)."""

    def _task(self, method: str, req: object) -> Task:
        task_id = getattr(req, "id", "")
        _require_id(method, task_id)
        if getattr(req, "exec_id", ""):
            raise errors.InvalidArgument(f"{method} {task_id}: not for an exec process (exec_id {req.exec_id!r})")  # type: ignore[attr-defined]
        return self.registry.get(task_id)

    def _is_exec(self, method: str, req: Any) -> bool:
        _require_id(method, req.id)
        return bool(req.exec_id)

    async def Create(self, req: pb.CreateTaskRequest, call: Call) -> pb.CreateTaskResponse:
        self.lifetime.arrived(req.id)  # its claim is settled: from here on the registry counts the task
        _require_id("create", req.id)
        if req.checkpoint or req.parent_checkpoint:
            raise errors.InvalidArgument(f"create {req.id}: restoring from a checkpoint is not supported")
        if req.HasField("options") and req.options.type_url:
            runtime_options.check(req.options.type_url, f"create {req.id}")
        if not req.bundle or not os.path.isabs(req.bundle):
            raise errors.InvalidArgument(f"create {req.id}: bundle path {req.bundle!r} is not absolute")
        for name in ("stdin", "stdout", "stderr"):
            path = getattr(req, name)
            if path and "://" in path and not path.startswith("file://"):
                raise errors.InvalidArgument(
                    f"create {req.id}: {name} {path!r}: only FIFO paths and file:// are supported"
                )
        opts = CreateOpts(
            bundle=req.bundle,
            spec=load_spec(req.bundle),
            rootfs=[mounts.MountSpec(type=m.type, source=m.source, target=m.target, options=tuple(m.options))
                    for m in req.rootfs],
            io=TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal),
        )
        task = await self.registry.create(req.id, opts)
        log.info("created task %s (worker pid %d)", req.id, task.pid, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return pb.CreateTaskResponse(pid=task.pid)

    async def Start(self, req: pb.StartRequest, call: Call) -> pb.StartResponse:
        if self._is_exec("start", req):
            return await self.execs.start(req)
        task = self._task("start", req)
        pid = await self.registry.start(task)
        log.info("started task %s", req.id, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return pb.StartResponse(pid=pid)

    async def Delete(self, req: pb.DeleteRequest, call: Call) -> pb.DeleteResponse:
        if self._is_exec("delete", req):
            return await self.execs.delete(req)
        exit = await self.registry.delete(req.id)
        log.info("deleted task %s", req.id, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return pb.DeleteResponse(pid=exit.pid, exit_status=exit.status, exited_at=timestamp(exit.at_ns))

    async def State(self, req: pb.StateRequest, call: Call) -> pb.StateResponse:
        if self._is_exec("state", req):
            return await self.execs.state(req)
        task = self._task("state", req)
        io = task.opts.io
        exit = task.exit
        return pb.StateResponse(
            id=task.id, bundle=task.opts.bundle, pid=task.pid, status=_STATUS[task.state.status],
            stdin=io.stdin, stdout=io.stdout, stderr=io.stderr, terminal=io.terminal,
            exit_status=exit.status if exit else 0,
            exited_at=timestamp(exit.at_ns if exit else None),
        )

    async def Wait(self, req: pb.WaitRequest, call: Call) -> pb.WaitResponse:
        if self._is_exec("wait", req):
            return await self.execs.wait(req)
        task = self._task("wait", req)
        exit = await self.registry.wait(task)
        return pb.WaitResponse(exit_status=exit.status, exited_at=timestamp(exit.at_ns))

    async def Kill(self, req: pb.KillRequest, call: Call) -> Empty:
        if self._is_exec("kill", req):
            return await self.execs.kill(req)
        task = self._task("kill", req)
        await self.registry.kill(task, req.signal, req.all)
        log.info("sent signal %d to task %s", req.signal, req.id, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return Empty()

    async def Pids(self, req: pb.PidsRequest, call: Call) -> pb.PidsResponse:
        task = self._task("pids", req)
        return pb.PidsResponse(processes=[types_pb.ProcessInfo(pid=pid) for pid in self.registry.pids(task)])

    async def Connect(self, req: pb.ConnectRequest, call: Call) -> pb.ConnectResponse:
        task_pid = 0
        if req.id:
            try:
                task_pid = self.registry.get(req.id).pid
            except errors.NotFound:
                task_pid = 0
        return pb.ConnectResponse(shim_pid=os.getpid(), task_pid=task_pid, version=VERSION)

    async def CloseIO(self, req: pb.CloseIORequest, call: Call) -> Empty:
        if self._is_exec("closeio", req):
            return await self.execs.close_io(req)
        # The worker reads the stdin FIFO itself: it sees EOF when the client closes its end,
        # so there is nothing to close here.
        self._task("closeio", req)
        return Empty()

    async def Shutdown(self, req: pb.ShutdownRequest, call: Call) -> Empty:
        # The supervisor's lifetime decides: it ends once no task and no claim remains (lifetime.py).
        self.lifetime.shutdown(req.id)
        return Empty()

    async def Stats(self, req: pb.StatsRequest, call: Call) -> pb.StatsResponse:
        task = self._task("stats", req)
        if task.cgroup is None:
            raise errors.Unimplemented(f"stats {req.id}: the task has no cgroup (its spec has no linux section)")
        return pb.StatsResponse(stats=task.cgroup.stats())

    async def Exec(self, req: pb.ExecProcessRequest, call: Call) -> Empty:
        _require_id("exec", req.id)
        return await self.execs.exec(req)

    async def Pause(self, req: pb.PauseRequest, call: Call) -> Empty:
        await self.registry.pause(self._task("pause", req))
        log.info("paused task %s", req.id, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return Empty()

    async def Resume(self, req: pb.ResumeRequest, call: Call) -> Empty:
        await self.registry.resume(self._task("resume", req))
        log.info("resumed task %s", req.id, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return Empty()

    async def Checkpoint(self, req: pb.CheckpointTaskRequest, call: Call) -> Empty:
        self._task("checkpoint", req)
        raise errors.Unimplemented("checkpoint: wasmvisor cannot checkpoint a task")

    async def ResizePty(self, req: pb.ResizePtyRequest, call: Call) -> Empty:
        if self._is_exec("resizepty", req):
            return await self.execs.resize_pty(req)
        self._task("resizepty", req).instance.resize_pty(req.width, req.height)
        return Empty()

    async def Update(self, req: pb.UpdateTaskRequest, call: Call) -> Empty:
        self.registry.update(self._task("update", req), req.resources)
        log.info("updated the resources of task %s", req.id, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return Empty()
