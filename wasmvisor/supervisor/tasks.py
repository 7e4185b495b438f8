"""The task registry, in the shape of containerd's own runtime interface (PlatformRuntime).

`create`, `get`, `tasks` and `delete` manage Tasks; each Task holds its Instance and its state
machine. The registry publishes the task events, and the exit listener here is the one path by
which an exit becomes state, TaskExit and Wait replies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from wasmvisor import errors
from wasmvisor.spec import Spec
from wasmvisor.supervisor import logs, mounts, task_events
from wasmvisor.supervisor.instance import Exit, InstanceConfig, WorkerInstance, worker_pid_file
from wasmvisor.supervisor.task_state import TaskState

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, topic: str, event: Any) -> None: ...


@dataclass(frozen=True)
class TaskIO:
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@dataclass(frozen=True)
class CreateOpts:
    """What containerd's Create carries, decoded (as containerd's runtime.CreateOpts)."""

    bundle: str
    spec: Spec | None = None
    """The bundle's config.json, parsed."""
    rootfs: Sequence[mounts.MountSpec] = ()
    io: TaskIO = field(default_factory=TaskIO)
    checkpoint: str = ""
    runtime_options: bytes = b""
    task_options: bytes = b""
    sandbox_id: str = ""


@dataclass
class Task:
    id: str
    opts: CreateOpts
    rootfs: str
    instance: WorkerInstance
    state: TaskState = field(default_factory=TaskState)

    @property
    def pid(self) -> int:
        return self.instance.pid

    @property
    def exit(self) -> Exit | None:
        return self.instance.exit


class TaskRegistry:
    """All tasks of one supervisor (one pod group), by id."""

    def __init__(self, namespace: str, group: str, events: Publisher, *, engine: str, log_level: str) -> None:
        self.namespace = namespace
        self.group = group
        self.events = events
        self.engine = engine
        self.log_level = log_level
        self._tasks: dict[str, Task] = {}
        self._reserved: set[str] = set()
        self.empty = asyncio.Event()
        self.empty.set()

    def id(self) -> str:
        return f"io.containerd.wasmvisor.v1/{self.namespace}/{self.group}"

    def get(self, task_id: str) -> Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise errors.NotFound(f"task {task_id}: not found")
        return task

    def tasks(self, all: bool = True) -> list[Task]:
        return [t for t in self._tasks.values() if all or t.state.alive]

    def __len__(self) -> int:
        return len(self._tasks) + len(self._reserved)

    async def create(self, task_id: str, opts: CreateOpts) -> Task:
        if task_id in self._tasks or task_id in self._reserved:
            raise errors.AlreadyExists(f"task {task_id}: already exists")
        self._reserved.add(task_id)
        self.empty.clear()
        try:
            task = await self._create(task_id, opts)
        finally:
            self._reserved.discard(task_id)
            self._update_empty()
        self._tasks[task_id] = task
        self.empty.clear()
        self.events.publish("/tasks/create", task_events.create(task))
        return task

    async def _create(self, task_id: str, opts: CreateOpts) -> Task:
        rootfs = os.path.join(opts.bundle, "rootfs")
        if opts.rootfs:
            mounts.mount_all(opts.rootfs, rootfs)
        try:
            cfg = InstanceConfig(
                namespace=self.namespace, bundle=opts.bundle, rootfs=rootfs,
                stdin=opts.io.stdin, stdout=opts.io.stdout, stderr=opts.io.stderr,
                terminal=opts.io.terminal, engine=self.engine, log_level=self.log_level, pod=self.group,
            )
            instance = await WorkerInstance.new(task_id, cfg)
        except BaseException:
            if opts.rootfs:
                mounts.unmount_all(rootfs)
            raise
        task = Task(id=task_id, opts=opts, rootfs=rootfs, instance=instance)
        instance.on_start = lambda inst: self._on_start(task)
        instance.on_exit = lambda inst, exit: self._on_exit(task, exit)
        if instance.exit is not None:  # it died between Ready and now
            self._on_exit(task, instance.exit)
        _write_pid_file(opts.bundle, instance.pid)
        return task

    async def start(self, task: Task) -> int:
        task.state.start()
        try:
            return await task.instance.start()
        except errors.ShimError:
            raise
        except Exception as exc:
            raise errors.Internal(f"start of task {task.id} failed: {exc}") from exc

    def _on_start(self, task: Task) -> None:
        task.state.started()
        self.events.publish("/tasks/start", task_events.start(task))

    def _on_exit(self, task: Task, exit: Exit) -> None:
        if not task.state.alive:
            return
        task.state.stop()
        log.info("task %s exited with status %d", task.id, exit.status, extra={logs.FIELDS_ATTR: {"instance": task.id}})
        self.events.publish("/tasks/exit", task_events.exit(task, exit))

    def kill(self, task: Task, signo: int, all: bool = False) -> None:
        task.state.check_killable()
        if not 0 < signo < signal.NSIG:
            raise errors.InvalidArgument(f"kill {task.id}: invalid signal {signo}")
        task.instance.kill(signo)

    async def delete(self, task_id: str) -> Exit:
        task = self.get(task_id)
        task.state.delete()
        await task.instance.delete()
        exit = task.exit
        assert exit is not None
        if task.opts.rootfs:
            mounts.unmount_all(task.rootfs)
        try:
            os.unlink(worker_pid_file(task.opts.bundle))
        except FileNotFoundError:
            pass
        del self._tasks[task_id]
        self._update_empty()
        self.events.publish("/tasks/delete", task_events.delete(task, exit))
        return exit

    def _update_empty(self) -> None:
        if not self._tasks and not self._reserved:
            self.empty.set()


def _write_pid_file(bundle: str, pid: int) -> None:
    path = worker_pid_file(bundle)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)  # root's alone
    with open(fd, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)

