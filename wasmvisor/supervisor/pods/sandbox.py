"""The pod sandbox's state: one small explicit type, as a task's (tasks/state.py).

CREATED (CreateSandbox) -> READY (StartSandbox) -> STOPPED (StopSandbox, or ShutdownSandbox). Its one
exit is recorded once, when it stops, and answers every WaitSandbox.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field

from wasmvisor.errors import FailedPrecondition
from wasmvisor.supervisor.pods.config import PodConfig
from wasmvisor.supervisor.pods.namespaces import PodNamespaces

STATE_READY = "SANDBOX_READY"
STATE_NOTREADY = "SANDBOX_NOTREADY"
"""The state strings CRI reads from SandboxStatus (containerd 2.x, internal/cri/server/podsandbox)."""


class PodStatus(enum.Enum):
    CREATED = "created"
    READY = "ready"
    STOPPED = "stopped"


@dataclass
class Pod:
    """One pod sandbox: what CreateSandbox gave, and its life."""

    id: str
    bundle: str
    config: PodConfig
    namespaces: PodNamespaces
    status: PodStatus = PodStatus.CREATED
    exit_status: int = 0
    exited_at_ns: int | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    made_cgroup: bool = False
    """The supervisor made the pod's cgroup parent (the kubelet had not): it removes it at Shutdown."""

    def _move(self, allowed: tuple[PodStatus, ...], to: PodStatus) -> None:
        if self.status not in allowed:
            raise FailedPrecondition(
                f"sandbox {self.id}: invalid state transition: {self.status.name} => {to.name}")
        self.status = to

    def start(self) -> None:
        self._move((PodStatus.CREATED,), PodStatus.READY)

    def stop(self, exit_status: int = 0) -> None:
        """Stopped (idempotent: a second Stop changes nothing); every WaitSandbox returns now."""
        if self.status is PodStatus.STOPPED:
            return
        self._move((PodStatus.CREATED, PodStatus.READY), PodStatus.STOPPED)
        self.exit_status = exit_status
        self.exited_at_ns = time.time_ns()
        self.stopped.set()

    @property
    def state(self) -> str:
        return STATE_READY if self.status is PodStatus.READY else STATE_NOTREADY
