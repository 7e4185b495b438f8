"""The containerd.events messages for a task, and the protobuf Timestamp conversions they share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from wasmvisor.proto.containerd.events import task_pb2 as ev
from wasmvisor.proto.containerd.types import mount_pb2

if TYPE_CHECKING:
    from wasmvisor.supervisor.tasks.instance import Exit
    from wasmvisor.supervisor.tasks.task import Task

# Go's zero time (0001-01-01T00:00:00Z): what runc sends for "not exited", and what every
# containerd version shows as such (an absent field shows as 1970 on 1.7+).
ZERO_TIME_SECONDS = -62135596800


def timestamp(ns: int | None) -> Timestamp:
    if ns is None:
        return Timestamp(seconds=ZERO_TIME_SECONDS, nanos=0)
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def create(task: Task) -> ev.TaskCreate:
    io = task.opts.io
    return ev.TaskCreate(
        container_id=task.id,
        bundle=task.opts.bundle,
        rootfs=[
            mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
            for m in task.opts.rootfs
        ],
        io=ev.TaskIO(stdin=io.stdin, stdout=io.stdout, stderr=io.stderr, terminal=io.terminal),
        checkpoint=task.opts.checkpoint,
        pid=task.pid,
    )


def start(task: Task) -> ev.TaskStart:
    return ev.TaskStart(container_id=task.id, pid=task.pid)


def exit(task: Task, exit: Exit) -> ev.TaskExit:
    return ev.TaskExit(
        container_id=task.id, id=task.id, pid=exit.pid, exit_status=exit.status,
        exited_at=timestamp(exit.at_ns),
    )


def delete(task: Task, exit: Exit) -> ev.TaskDelete:
    return ev.TaskDelete(
        container_id=task.id, id=task.id, pid=exit.pid, exit_status=exit.status,
        exited_at=timestamp(exit.at_ns),
    )


def oom(task_id: str) -> ev.TaskOOM:
    return ev.TaskOOM(container_id=task_id)


def paused(task: Task) -> ev.TaskPaused:
    return ev.TaskPaused(container_id=task.id)


def resumed(task: Task) -> ev.TaskResumed:
    return ev.TaskResumed(container_id=task.id)
