"""A cgroup v2 that systemd owns: a transient scope (a container) or slice (a pod), as runc's systemd driver
makes them, used when `linux.cgroupsPath` has the systemd form and systemd runs the host.

Why not write under systemd's slices directly: systemd re-realizes a slice (`systemctl set-property`,
`daemon-reload`, a sibling unit starting) from the units it knows, and turns off in its
`cgroup.subtree_control` the controllers none of them needs; a cgroup made behind its back then loses
its memory.max and cpu.weight without a word. A delegated scope (Delegate=yes) is a unit systemd keeps
the controllers on for, and the limits given as its properties are the ones systemd writes back.

A scope cannot start empty: it starts when the first process (the worker) joins, with PIDs=[pid]; the
limits go in as properties and are then written into the scope's cgroup as on any v2 cgroup (for what
systemd has no property for). Delete stops the unit and resets a failed state, so nothing is left.
A slice (`x.slice` given alone, a pod's cgroup parent) starts at `create`.
"""

from __future__ import annotations

from wasmvisor.cgroups import base
from wasmvisor.cgroups.base import read_keyed
from wasmvisor.cgroups.resources import Resources, shares_to_weight, v2_swap
from wasmvisor.cgroups.systemd_bus import UNIT_INFINITY, Property, SystemdManager
from wasmvisor.cgroups.v2 import V2Cgroup
from wasmvisor.errors import FailedPrecondition, Internal, ShimError

ACCOUNTING = ("MemoryAccounting", "CPUAccounting", "IOAccounting", "TasksAccounting")


def _limit(value: int) -> int:
    return UNIT_INFINITY if value < 0 else value


def quota_per_second(quota: int, period: int) -> int:
    """CPUQuotaPerSecUSec of a CFS quota and period (µs), rounded up to systemd's 10 ms steps as runc does."""
    usec = quota * 1_000_000 // period
    return usec if usec % 10_000 == 0 else (usec // 10_000 + 1) * 10_000


def unit_properties(res: Resources) -> list[Property]:
    """The unit properties of `res` that systemd knows (it writes them again whenever it re-realizes the
    unit); the rest is written in the cgroup only."""
    props: list[Property] = []
    if res.memory_limit:
        props.append(("MemoryMax", ("t", _limit(res.memory_limit))))
    swap = v2_swap(res.memory_limit, res.memory_swap)
    if swap is not None:
        props.append(("MemorySwapMax", ("t", UNIT_INFINITY if swap == "max" else int(swap))))
    if res.memory_reservation:
        props.append(("MemoryLow", ("t", _limit(res.memory_reservation))))
    if res.cpu_shares:
        props.append(("CPUWeight", ("t", shares_to_weight(res.cpu_shares))))
    if res.cpu_period:
        props.append(("CPUQuotaPeriodUSec", ("t", res.cpu_period)))
    if res.cpu_quota:
        period = res.cpu_period or 100_000
        per_second = UNIT_INFINITY if res.cpu_quota < 0 else quota_per_second(res.cpu_quota, period)
        props.append(("CPUQuotaPerSecUSec", ("t", per_second)))
    if res.pids_limit:
        props.append(("TasksMax", ("t", _limit(res.pids_limit))))
    return props


def scope_start_properties(slice_name: str, pid: int, description: str) -> list[Property]:
    """What runc gives a container's scope: its slice, its first process, delegation, accounting."""
    props: list[Property] = [
        ("Description", ("s", description)),
        ("Slice", ("s", slice_name)),
        ("PIDs", ("au", [pid])),
        ("Delegate", ("b", True)),
        ("DefaultDependencies", ("b", False)),
    ]
    return props + [(name, ("b", True)) for name in ACCOUNTING]


def slice_start_properties(description: str) -> list[Property]:
    props: list[Property] = [("Description", ("s", description)), ("DefaultDependencies", ("b", False))]
    return props + [(name, ("b", True)) for name in ACCOUNTING]


class SystemdUnitCgroup(V2Cgroup):
    """The cgroup of systemd unit `unit` (a `.scope` in `slice_name`, or a `.slice`) at `path`."""

    def __init__(self, path: str, root: str, *, unit: str, slice_name: str, given: str = "") -> None:
        super().__init__(path, root, given=given)
        self.unit = unit
        self.slice_name = slice_name
        self.is_scope = unit.endswith(".scope")
        self._started = False
        self._pending = Resources()
        self._oom_kills = 0  # the last count read from memory.events

    def __repr__(self) -> str:
        return f"SystemdUnitCgroup({self.unit!r} at {self.path!r})"

    @property
    def ready(self) -> bool:
        return self._started or not self.is_scope

    def create(self) -> None:
        """A slice starts now (unless it runs already); a scope starts with its first process, in `add`."""
        if self.is_scope:
            return
        with SystemdManager.connect(self.unit) as manager:
            if manager.active_state(self.unit) != "active":
                manager.reset_failed(self.unit)
                manager.start_transient(self.unit, slice_start_properties(f"wasmvisor pod {self.unit}"))
        self._started = True

    def add(self, pid: int) -> None:
        if self._started:
            super().add(pid)
            return
        pending, self._pending = self._pending, Resources()
        props = scope_start_properties(self.slice_name, pid, f"wasmvisor container {self.unit}")
        with SystemdManager.connect(self.unit) as manager:
            try:
                manager.start_transient(self.unit, props + unit_properties(pending))
            except FailedPrecondition:
                # UnitExists: a failed or stopping scope of the same name (a container id reused after
                # a crash); runc resets it and tries once more too.
                manager.reset_failed(self.unit)
                manager.start_transient(self.unit, props + unit_properties(pending))
        self._started = True
        if not self.exists():
            raise Internal(f"systemd unit {self.unit}: started, but its cgroup {self.dir} is not there")
        super().apply(pending)

    def apply(self, res: Resources) -> None:
        if not self._started:
            self._pending = self._pending.merged(res)  # given to systemd when the scope starts
            return
        props = unit_properties(res)
        if props:
            with SystemdManager.connect(self.unit) as manager:
                manager.set_properties(self.unit, props)
        super().apply(res)

    def oom_kills(self) -> int:
        if not self._started:
            return 0
        try:
            self._oom_kills = read_keyed(self._file("memory.events")).get("oom_kill", 0)
        except OSError:
            # systemd removes a scope's cgroup as soon as its last process is gone, which can be before
            # the task's exit path looks; it keeps its own verdict in the scope's Result (OOMPolicy).
            if self._scope_result() == "oom-kill":
                return self._oom_kills + 1
            raise
        return self._oom_kills

    def _scope_result(self) -> str:
        try:
            with SystemdManager.connect(self.unit) as manager:
                return manager.scope_result(self.unit)
        except ShimError:
            return ""

    def remove(self) -> None:
        """StopUnit (its processes were killed already), reset a failed state, rmdir what is left."""
        with SystemdManager.connect(self.unit) as manager:
            manager.stop(self.unit)
            manager.reset_failed(self.unit)
        self._started = False
        try:
            base.rmdir_retrying(self.dir)
        except OSError as exc:
            raise Internal(f"systemd unit {self.unit}: cgroup {self.dir} stays after StopUnit: "
                           f"{exc.strerror or exc}") from None
