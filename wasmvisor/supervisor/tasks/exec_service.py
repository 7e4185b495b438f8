"""The Task API's answers for exec processes (requests with an `exec_id`): Exec, and Start, Kill,
Wait, Delete, State, CloseIO and ResizePty of an exec. TaskService (service.py) hands every request
that names an exec here; the processes themselves live in the task's TaskExecs (execs.py).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from google.protobuf.empty_pb2 import Empty

from wasmvisor import errors, logs
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.supervisor.tasks.events import timestamp
from wasmvisor.supervisor.tasks.execs import ExecProcess, ExecStatus, TaskExecs
from wasmvisor.supervisor.tasks.instance import TaskIO
from wasmvisor.supervisor.tasks.registry import TaskRegistry

log = logging.getLogger(__name__)

PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

_STATUS = {
    ExecStatus.CREATED: types_pb.CREATED,
    ExecStatus.RUNNING: types_pb.RUNNING,
    ExecStatus.STOPPED: types_pb.STOPPED,
}


def parse_exec_spec(type_url: str, value: bytes, what: str) -> dict[str, Any]:
    """The OCI process object an Exec request carries (JSON in an Any)."""
    if type_url and type_url.rsplit("/", 4)[-4:] != PROCESS_TYPE_URL.rsplit("/", 4)[-4:]:
        raise errors.InvalidArgument(f"{what}: spec has type {type_url!r}, want {PROCESS_TYPE_URL!r}")
    try:
        process = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidArgument(f"{what}: the process spec is not valid JSON ({exc})") from None
    if not isinstance(process, dict):
        raise errors.InvalidArgument(f"{what}: the process spec is not a JSON object")
    return process


class ExecHandlers:
    """What TaskService answers for an exec."""

    def __init__(self, registry: TaskRegistry) -> None:
        self.registry = registry

    def _find(self, task_id: str, exec_id: str) -> tuple[TaskExecs, ExecProcess]:
        execs = self.registry.execs_of(self.registry.get(task_id))
        return execs, execs.get(exec_id)

    async def exec(self, req: pb.ExecProcessRequest) -> Empty:
        what = f"exec {req.exec_id!r} in task {req.id}"
        task = self.registry.get(req.id)
        if not req.exec_id:
            raise errors.InvalidArgument(f"{what}: exec id is empty")
        for name in ("stdin", "stdout", "stderr"):
            path = getattr(req, name)
            if path and "://" in path and not path.startswith("file://"):
                raise errors.InvalidArgument(f"{what}: {name} {path!r}: only FIFO paths and file:// are supported")
        process = parse_exec_spec(req.spec.type_url, req.spec.value, what)
        terminal = req.terminal or bool(process.get("terminal"))
        stdio = TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=terminal)
        proc = await self.registry.exec(task, req.exec_id, process, stdio)
        log.info("%s: prepared, pid %d", proc.name, proc.pid, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return Empty()

    async def start(self, req: pb.StartRequest) -> pb.StartResponse:
        execs, proc = self._find(req.id, req.exec_id)
        pid = await execs.start(proc)
        log.info("%s: started", proc.name, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return pb.StartResponse(pid=pid)

    async def delete(self, req: pb.DeleteRequest) -> pb.DeleteResponse:
        execs, proc = self._find(req.id, req.exec_id)
        exit = await execs.delete(proc)
        log.info("%s: deleted", proc.name, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return pb.DeleteResponse(pid=exit.pid, exit_status=exit.status, exited_at=timestamp(exit.at_ns))

    async def state(self, req: pb.StateRequest) -> pb.StateResponse:
        _, proc = self._find(req.id, req.exec_id)
        io, exit = proc.stdio, proc.exit
        return pb.StateResponse(
            id=proc.id, bundle=self.registry.get(req.id).opts.bundle, pid=proc.pid, status=_STATUS[proc.state.status],
            stdin=io.stdin, stdout=io.stdout, stderr=io.stderr, terminal=io.terminal,
            exit_status=exit.status if exit else 0, exited_at=timestamp(exit.at_ns if exit else None),
            exec_id=proc.id,
        )

    async def wait(self, req: pb.WaitRequest) -> pb.WaitResponse:
        execs, proc = self._find(req.id, req.exec_id)
        exit = await execs.wait(proc)
        return pb.WaitResponse(exit_status=exit.status, exited_at=timestamp(exit.at_ns))

    async def kill(self, req: pb.KillRequest) -> Empty:
        execs, proc = self._find(req.id, req.exec_id)
        execs.kill(proc, req.signal)
        log.info("sent signal %d to %s", req.signal, proc.name, extra={logs.FIELDS_ATTR: {"instance": req.id}})
        return Empty()

    async def close_io(self, req: pb.CloseIORequest) -> Empty:
        # The exec's worker reads its stdin FIFO itself and sees EOF when the client closes it.
        self._find(req.id, req.exec_id)
        return Empty()

    async def resize_pty(self, req: pb.ResizePtyRequest) -> Empty:
        _, proc = self._find(req.id, req.exec_id)
        proc.instance.resize_pty(req.width, req.height)
        return Empty()
