"""A task's exec processes (Task API Exec, then Start/Kill/Wait/Delete/State with exec_id).

Each exec is an Instance of its own (the task's Instance makes it: `Instance.exec`), in the task's
cgroup, with its own small state machine (`ExecState`) and one exit path, as the task's: an
asyncio task that awaits `instance.wait()` records the exit and publishes the TaskExit that
carries the exec id. An exec's exit never ends its task; the task's end (or its Delete) ends its
execs (`end_all`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from wasmvisor import errors, logs
from wasmvisor.proto.containerd.events import task_pb2 as ev
from wasmvisor.supervisor.tasks.events import timestamp
from wasmvisor.supervisor.tasks.instance import Exit, Instance, OnForked, TaskIO
from wasmvisor.supervisor.tasks.state import StateMachine

log = logging.getLogger(__name__)


class ExecStatus(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


class ExecState(StateMachine[ExecStatus]):
    """CREATED -> RUNNING -> STOPPED (an exec may also stop before it ever ran)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(ExecStatus.CREATED)

    def start(self) -> None:
        self._move((ExecStatus.CREATED,), ExecStatus.RUNNING)

    def stop(self) -> None:
        self._move((ExecStatus.CREATED, ExecStatus.RUNNING), ExecStatus.STOPPED)

    def check_deletable(self, what: str) -> None:
        if self.status is ExecStatus.RUNNING:
            raise errors.FailedPrecondition(f"delete {what}: the process is still running")

    def check_killable(self, what: str) -> None:
        if self.status is ExecStatus.STOPPED:
            raise errors.NotFound(f"kill {what}: process already finished: not found")

    @property
    def alive(self) -> bool:
        return self.status is not ExecStatus.STOPPED


@dataclass
class ExecProcess:
    task_id: str
    id: str
    stdio: TaskIO
    instance: Instance
    state: ExecState = field(default_factory=ExecState)
    exit: Exit | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    start_returned: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.start_returned.set()

    @property
    def pid(self) -> int:
        return self.instance.pid

    @property
    def name(self) -> str:
        return f"exec {self.id!r} of task {self.task_id}"


class Publisher(Protocol):
    def publish(self, topic: str, event: Any) -> None: ...


class TaskExecs:
    """The exec processes of one task, by exec id."""

    def __init__(self, task_id: str, events: Publisher) -> None:
        self.task_id = task_id
        self.events = events
        self._execs: dict[str, ExecProcess] = {}
        self._reserved: set[str] = set()

    def get(self, exec_id: str) -> ExecProcess:
        found = self._execs.get(exec_id)
        if found is None:
            raise errors.NotFound(f"exec {exec_id!r} of task {self.task_id}: not found")
        return found

    def __len__(self) -> int:
        return len(self._execs)

    async def add(self, exec_id: str, init: Instance, process: Mapping[str, Any], stdio: TaskIO,
                  on_forked: OnForked | None) -> ExecProcess:
        """Exec: prepare the process (its worker answers Ready) and publish TaskExecAdded."""
        if exec_id in self._execs or exec_id in self._reserved:
            raise errors.AlreadyExists(f"exec {exec_id!r} of task {self.task_id}: already exists")
        self._reserved.add(exec_id)
        try:
            instance = await init.exec(exec_id, process, stdio, on_forked)
        finally:
            self._reserved.discard(exec_id)
        proc = ExecProcess(self.task_id, exec_id, stdio, instance)
        self._execs[exec_id] = proc
        self.events.publish("/tasks/exec-added", ev.TaskExecAdded(container_id=self.task_id, exec_id=exec_id))
        proc.watcher = asyncio.get_running_loop().create_task(self._watch_exit(proc), name=f"exit of {proc.name}")
        return proc

    async def start(self, proc: ExecProcess) -> int:
        proc.state.start()
        proc.start_returned.clear()
        try:
            pid = await proc.instance.start()
            self.events.publish("/tasks/exec-started",
                                ev.TaskExecStarted(container_id=self.task_id, exec_id=proc.id, pid=pid))
            return pid
        finally:
            proc.start_returned.set()

    async def _watch_exit(self, proc: ExecProcess) -> None:
        """The exec's one exit path: state, TaskExit (id = the exec id) and Wait's answer."""
        exit = await proc.instance.wait()
        await proc.start_returned.wait()  # TaskExecStarted goes first
        proc.exit = exit
        proc.state.stop()
        log.info("%s exited with status %d", proc.name, exit.status,
                 extra={logs.FIELDS_ATTR: {"instance": self.task_id}})
        self.events.publish("/tasks/exit", ev.TaskExit(
            container_id=self.task_id, id=proc.id, pid=exit.pid, exit_status=exit.status,
            exited_at=timestamp(exit.at_ns)))
        proc.exited.set()

    async def wait(self, proc: ExecProcess) -> Exit:
        await proc.exited.wait()
        assert proc.exit is not None
        return proc.exit

    def kill(self, proc: ExecProcess, signo: int) -> None:
        proc.state.check_killable(proc.name)
        if not 0 < signo < signal.NSIG:
            raise errors.InvalidArgument(f"kill {proc.name}: invalid signal {signo}")
        proc.instance.kill(signo)

    async def delete(self, proc: ExecProcess) -> Exit:
        """Remove a stopped (or never started) exec; return how it ended."""
        proc.state.check_deletable(proc.name)
        await proc.instance.delete()
        exit = await self.wait(proc)
        self._execs.pop(proc.id, None)
        return exit

    async def end_all(self) -> None:
        """The task ended or goes: SIGKILL every exec still alive, wait for their exits and forget
        them (their TaskExit events are published as for any exit)."""
        procs = list(self._execs.values())
        for proc in procs:
            if proc.state.alive:
                try:
                    proc.instance.kill(signal.SIGKILL)
                except errors.ShimError:
                    pass  # it has just ended
        for proc in procs:
            try:
                await proc.instance.delete()
                await proc.exited.wait()
            except Exception as exc:
                log.warning("ending %s failed: %s", proc.name, exc)
        for proc in procs:
            self._execs.pop(proc.id, None)
