"""OCI `linux.resources` to the cgroup files that apply them, for v1 and v2 (pure).

`Resources.parse` checks the JSON shape; `v1_writes` and `v2_writes` return (file, value) pairs
in the order they must be written (a period before its quota, a swap limit after the memory limit
it must not fall below). Devices rules, block IO weights, hugetlb and network classes are not
applied: a wasm guest has no devices or block devices of its own to limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wasmvisor.errors import InvalidArgument

DEFAULT_CPU_PERIOD = 100_000
"""The kernel's default CFS period (µs), used for cpu.max when only a quota is given."""


@dataclass(frozen=True)
class Resources:
    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    """OCI's swap is memory + swap (v1's memsw); v2 wants the swap alone."""
    memory_swappiness: int | None = None
    disable_oom_killer: bool | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_realtime_runtime: int | None = None
    cpu_realtime_period: int | None = None
    cpus: str | None = None
    mems: str | None = None
    pids_limit: int | None = None
    unified: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, doc: Any, name: str = "linux.resources") -> Resources:
        """Resources from the JSON object `doc` (None or {} give empty Resources)."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{name}: not a JSON object")
        memory = _section(doc, "memory", name)
        cpu = _section(doc, "cpu", name)
        pids = _section(doc, "pids", name)
        unified = doc.get("unified") or {}
        if not isinstance(unified, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in unified.items()):
            raise InvalidArgument(f"{name}.unified: must map strings to strings")
        for key in unified:
            if "/" in key or key.startswith("."):
                raise InvalidArgument(f"{name}.unified: {key!r} is not a cgroup file name")
        swappiness = _int(memory, "swappiness", f"{name}.memory")
        if swappiness is not None and not 0 <= swappiness <= 100:
            raise InvalidArgument(f"{name}.memory.swappiness: {swappiness} is not within 0..100")
        oom = memory.get("disableOOMKiller")
        if oom is not None and not isinstance(oom, bool):
            raise InvalidArgument(f"{name}.memory.disableOOMKiller: must be true or false")
        return cls(
            memory_limit=_int(memory, "limit", f"{name}.memory"),
            memory_reservation=_int(memory, "reservation", f"{name}.memory"),
            memory_swap=_int(memory, "swap", f"{name}.memory"),
            memory_swappiness=swappiness,
            disable_oom_killer=oom,
            cpu_shares=_int(cpu, "shares", f"{name}.cpu"),
            cpu_quota=_int(cpu, "quota", f"{name}.cpu"),
            cpu_period=_int(cpu, "period", f"{name}.cpu"),
            cpu_realtime_runtime=_int(cpu, "realtimeRuntime", f"{name}.cpu"),
            cpu_realtime_period=_int(cpu, "realtimePeriod", f"{name}.cpu"),
            cpus=_str(cpu, "cpus", f"{name}.cpu"),
            mems=_str(cpu, "mems", f"{name}.cpu"),
            pids_limit=_int(pids, "limit", f"{name}.pids"),
            unified=dict(unified),
        )

    def merged(self, update: Resources) -> Resources:
        """These resources with every field `update` sets replaced (what Update does)."""
        values = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in self.__dataclass_fields__:
            new = getattr(update, key)
            if key == "unified":
                values[key] = {**self.unified, **update.unified}
            elif new is not None:
                values[key] = new
        return Resources(**values)


def _section(doc: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name}.{key}: not a JSON object")
    return value


def _int(doc: dict[str, Any], key: str, name: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name}.{key}: {value!r} is not an integer")
    return value


def _str(doc: dict[str, Any], key: str, name: str) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name}.{key}: {value!r} is not a string")
    return value


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000), by runc's formula."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def _limit(value: int) -> str:
    return "max" if value < 0 else str(value)


def v1_writes(res: Resources) -> list[tuple[str, str, str]]:
    """(controller, file, value) for cgroup v1, in write order."""
    out: list[tuple[str, str, str]] = []
    if res.cpus is not None:
        out.append(("cpuset", "cpuset.cpus", res.cpus))
    if res.mems is not None:
        out.append(("cpuset", "cpuset.mems", res.mems))
    if res.memory_limit is not None and res.memory_limit != 0:
        out.append(("memory", "memory.limit_in_bytes", str(res.memory_limit if res.memory_limit > 0 else -1)))
    if res.memory_swap is not None and res.memory_swap != 0:
        if res.memory_limit is not None and 0 < res.memory_swap < res.memory_limit:
            raise InvalidArgument(f"memory.swap {res.memory_swap} is below memory.limit {res.memory_limit} "
                                  "(OCI's swap counts memory and swap together)")
        out.append(("memory", "memory.memsw.limit_in_bytes", str(res.memory_swap if res.memory_swap > 0 else -1)))
    if res.memory_reservation is not None and res.memory_reservation != 0:
        out.append(("memory", "memory.soft_limit_in_bytes", str(res.memory_reservation)))
    if res.memory_swappiness is not None:
        out.append(("memory", "memory.swappiness", str(res.memory_swappiness)))
    if res.disable_oom_killer:
        out.append(("memory", "memory.oom_control", "1"))
    if res.cpu_shares:
        out.append(("cpu", "cpu.shares", str(res.cpu_shares)))
    if res.cpu_period:
        out.append(("cpu", "cpu.cfs_period_us", str(res.cpu_period)))
    if res.cpu_quota is not None and res.cpu_quota != 0:
        out.append(("cpu", "cpu.cfs_quota_us", str(res.cpu_quota if res.cpu_quota > 0 else -1)))
    if res.cpu_realtime_period:
        out.append(("cpu", "cpu.rt_period_us", str(res.cpu_realtime_period)))
    if res.cpu_realtime_runtime:
        out.append(("cpu", "cpu.rt_runtime_us", str(res.cpu_realtime_runtime)))
    if res.pids_limit is not None and res.pids_limit != 0:
        out.append(("pids", "pids.max", _limit(res.pids_limit)))
    if res.unified:
        raise InvalidArgument("linux.resources.unified needs cgroup v2 (this host uses cgroup v1)")
    return out


def v2_swap(limit: int | None, swap: int | None) -> str | None:
    """memory.swap.max from OCI's memory+swap total (as runc converts it); None to leave it."""
    if swap is None or swap == 0:
        return None
    if swap < 0:
        return "max"
    if limit is None or limit <= 0:
        raise InvalidArgument(f"memory.swap {swap} needs a memory.limit (OCI's swap counts memory and swap)")
    if swap < limit:
        raise InvalidArgument(f"memory.swap {swap} is below memory.limit {limit} "
                              "(OCI's swap counts memory and swap together)")
    return str(swap - limit)


def v2_writes(res: Resources) -> list[tuple[str, str]]:
    """(file, value) for cgroup v2, in write order."""
    out: list[tuple[str, str]] = []
    if res.cpus is not None:
        out.append(("cpuset.cpus", res.cpus))
    if res.mems is not None:
        out.append(("cpuset.mems", res.mems))
    if res.memory_limit is not None and res.memory_limit != 0:
        out.append(("memory.max", _limit(res.memory_limit)))
    swap = v2_swap(res.memory_limit, res.memory_swap)
    if swap is not None:
        out.append(("memory.swap.max", swap))
    if res.memory_reservation is not None and res.memory_reservation != 0:
        out.append(("memory.low", str(res.memory_reservation)))
    if res.cpu_shares:
        out.append(("cpu.weight", str(shares_to_weight(res.cpu_shares))))
    if (res.cpu_quota is not None and res.cpu_quota != 0) or res.cpu_period:
        quota = "max" if res.cpu_quota is None or res.cpu_quota <= 0 else str(res.cpu_quota)
        out.append(("cpu.max", f"{quota} {res.cpu_period or DEFAULT_CPU_PERIOD}"))
    if res.pids_limit is not None and res.pids_limit != 0:
        out.append(("pids.max", _limit(res.pids_limit)))
    out.extend(sorted(res.unified.items()))
    return out
