"""A task's cgroup as the supervisor drives it: made and limited at Create, joined by the worker as
soon as it is forked, frozen and thawed by Pause/Resume, updated, measured for Stats, watched for
OOM kills, removed at Delete.

OOM: the kernel's notification (v1 eventfd on memory.oom_control, v2 inotify on memory.events)
wakes the loop, and the oom_kill counter is compared with the last one reported, so each kill is
reported once; the exit path calls `check_oom` too, before TaskExit is published, so TaskOOM
always comes first for a worker the OOM killer ended.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from google.protobuf.any_pb2 import Any as AnyPb

from wasmvisor import cgroups, errors, logs
from wasmvisor.cgroups import Cgroup, Resources

log = logging.getLogger(__name__)

OOM_RECHECK_SECONDS = (0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
"""After an OOM notification with no kill counted yet: when to look at the counter again."""
LINUX_RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"


class TaskCgroup:
    """One task's cgroup and its OOM watch."""

    def __init__(self, task_id: str, cgroup: Cgroup, resources: Resources, on_oom: Callable[[], None]) -> None:
        self.task_id = task_id
        self.cgroup = cgroup
        self.resources = resources
        self.on_oom = on_oom
        self._oom_seen = 0
        self._oom_before = 0
        """OOM kills the cgroup had counted when the task got it."""
        self._oom_fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch_wanted = False
        """watch_oom came before the cgroup was there (a systemd scope starts with its first process)."""

    @classmethod
    def create(cls, task_id: str, namespace: str, spec_raw: Any, on_oom: Callable[[], None]) -> TaskCgroup | None:
        """Make the cgroup the spec names and apply its resources; None when the spec has no
        `linux` section or the host has no cgroups. Raises a ShimError naming the path. Blocking
        (the registry runs it on a thread): `watch_oom` then starts the OOM watch on the loop."""
        if not isinstance(spec_raw, dict) or "linux" not in spec_raw:
            return None
        path, resources = cgroups.spec_cgroup(spec_raw)
        cgroup = cgroups.open_cgroup(path, namespace, task_id)
        if cgroup is None:
            log.warning("task %s: this host has no cgroup hierarchy; linux.resources are not applied", task_id,
                        extra={logs.FIELDS_ATTR: {"instance": task_id}})
            return None
        try:
            cgroup.create()
        except BaseException:
            try:
                cgroup.remove()  # the hierarchies it was made in before one failed
            except errors.ShimError as exc:
                log.warning("task %s: %s", task_id, exc)
            raise
        task_cgroup = cls(task_id, cgroup, resources, on_oom)
        try:
            cgroup.apply(resources)
            task_cgroup._oom_seen = task_cgroup._oom_before = cgroup.oom_kills()
        except BaseException:
            task_cgroup.destroy()
            raise
        log.debug("task %s: cgroup v%d %s ready", task_id, cgroup.version, cgroup.path,
                  extra={logs.FIELDS_ATTR: {"instance": task_id}})
        return task_cgroup

    async def add(self, pid: int) -> None:
        """Put process `pid` in the cgroup. The first one starts a systemd scope: a D-Bus round trip
        and a job, off the loop; the OOM watch then begins. A write to cgroup.procs is off the loop too:
        the first one after a quiet moment waits 5-20 ms for the kernel (wasmvisor/cgroups/migration.py)."""
        scope = not self.cgroup.ready
        await asyncio.to_thread(self.cgroup.add, pid)
        if not scope:
            return
        self._oom_seen = self._oom_before = self.cgroup.oom_kills()
        log.debug("task %s: systemd unit for cgroup %s started with pid %d", self.task_id, self.cgroup.path, pid,
                  extra={logs.FIELDS_ATTR: {"instance": self.task_id}})
        if self._watch_wanted:
            self.watch_oom()

    def watch_oom(self) -> None:
        """Watch for OOM kills from the running loop (which `_on_memory_event` then runs on); for a
        cgroup not there yet, from its first process on."""
        if not self.cgroup.ready:
            self._watch_wanted = True
            return
        self._watch_wanted = False
        try:
            self._oom_fd = self.cgroup.open_oom_events()
        except errors.ShimError as exc:  # no memory controller: stats and limits still work
            log.warning("task %s: OOM kills will be seen only at exit: %s", self.task_id, exc)
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._oom_fd, self._on_memory_event)

    def _on_memory_event(self) -> None:
        self.cgroup.drain_oom_events(self._oom_fd)
        if not self.check_oom():
            # v1 notifies when the cgroup runs out of memory, before the OOM killer has chosen and
            # counted its victim: look again until the counter moves (or the moment has passed).
            self._recheck(OOM_RECHECK_SECONDS)

    def _recheck(self, delays: tuple[float, ...]) -> None:
        if delays and self._loop is not None:
            self._loop.call_later(delays[0], self._recheck_now, delays[1:])

    def _recheck_now(self, rest: tuple[float, ...]) -> None:
        if self._oom_fd >= 0 and not self.check_oom():
            self._recheck(rest)

    def check_oom(self) -> bool:
        """Report (once) an OOM kill the cgroup counted since the last check. True if one was."""
        try:
            count = self.cgroup.oom_kills()
        except OSError:
            return False
        if count <= self._oom_seen:
            return False
        self._oom_seen = count
        log.info("task %s: OOM kill in cgroup %s", self.task_id, self.cgroup.path,
                 extra={logs.FIELDS_ATTR: {"instance": self.task_id}})
        self.on_oom()
        return True

    @property
    def oom_killed(self) -> bool:
        """Whether the OOM killer has ended a process of the cgroup (as reported by check_oom)."""
        return self._oom_seen > self._oom_before

    async def freeze(self) -> None:
        await asyncio.to_thread(self.cgroup.freeze)

    async def thaw(self) -> None:
        await asyncio.to_thread(self.cgroup.thaw)

    def update(self, resources: Any) -> None:
        """Apply an UpdateTaskRequest.resources Any (OCI LinuxResources as JSON)."""
        update = parse_update(resources)
        self.cgroup.apply(update)
        self.resources = self.resources.merged(update)

    def stats(self) -> AnyPb:
        metrics = self.cgroup.metrics()
        return AnyPb(type_url=self.cgroup.metrics_type, value=metrics.SerializeToString())

    def pids(self) -> list[int]:
        return self.cgroup.pids()

    def _unwatch(self) -> None:
        if self._oom_fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._oom_fd)
            os.close(self._oom_fd)
            self._oom_fd = -1

    def destroy(self) -> None:
        """Stop watching, kill what is left in the cgroup (a container process of a worker that
        was killed) and remove it. Raises a ShimError if it stays."""
        self._unwatch()
        self.cgroup.kill_all()
        self.cgroup.remove()

    async def close(self) -> None:
        """`destroy` without blocking the loop (rmdir may be retried while the cgroup empties);
        a cgroup that stays is logged, not raised: the task is gone either way."""
        self._unwatch()
        try:
            await asyncio.to_thread(self.destroy)
        except errors.ShimError as exc:
            log.warning("task %s: %s", self.task_id, exc, extra={logs.FIELDS_ATTR: {"instance": self.task_id}})


def parse_update(resources: Any) -> Resources:
    """The Resources of an UpdateTaskRequest.resources Any; INVALID_ARGUMENT for other types."""
    import orjson

    if not resources.type_url:
        raise errors.InvalidArgument("update: resources are missing")
    if resources.type_url != LINUX_RESOURCES_TYPE:
        raise errors.InvalidArgument(f"update: resources of type {resources.type_url!r} are not understood "
                                     f"(expected {LINUX_RESOURCES_TYPE})")
    try:
        doc = orjson.loads(resources.value)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidArgument(f"update: resources are not valid JSON: {exc}") from None
    return Resources.parse(doc, name="update: resources")
