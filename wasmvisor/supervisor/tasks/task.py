"""One task as the registry holds it: what containerd's Create carried, its instance, its state machine,
its cgroup and, once recorded, its exit. Plain data: the registry (registry.py) drives it and the event
builders (events.py) read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from wasmvisor.spec import Spec
from wasmvisor.supervisor.tasks.cgroup import TaskCgroup
from wasmvisor.supervisor.tasks.instance import Exit, Instance, TaskIO
from wasmvisor.supervisor.tasks.mounts import MountSpec
from wasmvisor.supervisor.tasks.state import TaskState

__all__ = ["CreateOpts", "Task", "TaskIO"]


@dataclass(frozen=True)
class CreateOpts:
    """What containerd's Create carries, decoded (as containerd's runtime.CreateOpts)."""

    bundle: str
    spec: Spec | None = None
    """The bundle's config.json, parsed."""
    rootfs: Sequence[MountSpec] = ()
    io: TaskIO = field(default_factory=TaskIO)
    checkpoint: str = ""


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass
class Task:
    id: str
    opts: CreateOpts
    rootfs: str
    instance: Instance
    state: TaskState = field(default_factory=TaskState)
    cgroup: TaskCgroup | None = None
    """None when the spec has no `linux` section (or the host no cgroups)."""
    exit: Exit | None = None
    """How the task ended, once its exit watcher has recorded it (then `exited` is set)."""
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    start_returned: asyncio.Event = field(default_factory=_set_event)
    """Clear while Start is in flight: an exit meanwhile is recorded once Start has returned."""

    @property
    def pid(self) -> int:
        return self.instance.pid
