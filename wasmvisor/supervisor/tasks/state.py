"""The task state machine: one small explicit type (as runwasi's task_state.rs).

Handlers and the registry call transitions; nothing compares state strings. A transition that is
not allowed raises FailedPrecondition("invalid state transition: RUNNING => CREATED").
"""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

from wasmvisor.errors import FailedPrecondition, NotFound


class Status(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    DELETING = "deleting"


S = TypeVar("S", bound=enum.Enum)


class StateMachine(Generic[S]):
    """A status and the one way to change it (a task's here, an exec's in execs.py)."""

    __slots__ = ("status",)

    def __init__(self, initial: S) -> None:
        self.status = initial

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status.name})"

    def _move(self, allowed: tuple[S, ...], to: S) -> None:
        if self.status not in allowed:
            raise FailedPrecondition(f"invalid state transition: {self.status.name} => {to.name}")
        self.status = to


class TaskState(StateMachine[Status]):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(Status.CREATED)

    def start(self) -> None:
        """Start was called: CREATED => STARTING."""
        self._move((Status.CREATED,), Status.STARTING)

    def started(self) -> None:
        """The guest runs: STARTING => RUNNING."""
        self._move((Status.STARTING,), Status.RUNNING)

    def pause(self) -> None:
        """Pause froze the task's cgroup: RUNNING => PAUSED."""
        self._move((Status.RUNNING,), Status.PAUSED)

    def resume(self) -> None:
        """Resume thawed it: PAUSED => RUNNING."""
        self._move((Status.PAUSED,), Status.RUNNING)

    def stop(self) -> None:
        """The worker ended, whenever that happened (even before Start, or while paused)."""
        self._move((Status.CREATED, Status.STARTING, Status.RUNNING, Status.PAUSED), Status.STOPPED)

    def delete(self) -> None:
        """Delete was called: only a task that never started or has stopped can go."""
        self._move((Status.CREATED, Status.STOPPED), Status.DELETING)

    def delete_failed(self, ended: bool) -> None:
        """Delete failed part-way, and may be retried (runwasi allows Deleting => Exited for this):
        DELETING => STOPPED once the guest has ended, else back to CREATED."""
        self._move((Status.DELETING,), Status.STOPPED if ended else Status.CREATED)

    def check_killable(self) -> None:
        # runc answers NOT_FOUND for a process that already finished; containerd and CRI treat
        # that as "already dead".
        if self.status in (Status.STOPPED, Status.DELETING):
            raise NotFound(f"process already finished (task is {self.status.name}): not found")

    def check_running(self, what: str) -> None:
        """Exec needs a running container (runc refuses a paused or stopped one too)."""
        if self.status is not Status.RUNNING:
            raise FailedPrecondition(f"{what}: the task is {self.status.name}, not RUNNING")

    @property
    def alive(self) -> bool:
        return self.status in (Status.CREATED, Status.STARTING, Status.RUNNING, Status.PAUSED)

    @property
    def paused(self) -> bool:
        return self.status is Status.PAUSED

