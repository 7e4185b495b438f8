"""cgroup v1: one folder per controller hierarchy (/sys/fs/cgroup/<controller>/<path>)."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping

from wasmvisor.cgroups import base
from wasmvisor.cgroups.base import Cgroup, make_folder, path_error, read_int, read_keyed, read_text, write_file
from wasmvisor.cgroups.resources import Resources, v1_writes
from wasmvisor.errors import Internal

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices", "hugetlb",
               "net_cls", "net_prio", "perf_event", "rdma")
METRICS_TYPE = "io.containerd.cgroups.v1.Metrics"
USER_HZ = 100
"""cpuacct.stat counts in USER_HZ ticks (100 on Linux)."""


def hierarchies(root: str) -> dict[str, str]:
    """{controller: mount folder} of the v1 hierarchies under `root`. Co-mounted controllers
    (`cpu,cpuacct` with `cpu` and `cpuacct` symlinks) are listed once, under their first name."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for name in CONTROLLERS:
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        found[name] = folder
    return found


class V1Cgroup(Cgroup):
    version = 1
    metrics_type = METRICS_TYPE

    def __init__(self, path: str, mounts: Mapping[str, str], given: str = "",
                 paths: Mapping[str, str] | None = None) -> None:
        """`path` from each hierarchy's root (`paths` overrides it per controller, for relative
        cgroupsPaths resolved against the supervisor's own cgroups)."""
        self.path = path
        self.given = given or path
        self.mounts = dict(mounts)
        self.dirs = {c: os.path.join(m, (paths or {}).get(c, path).lstrip("/")) for c, m in self.mounts.items()}

    def __repr__(self) -> str:
        return f"V1Cgroup({self.path!r})"

    def _dir(self, controller: str) -> str | None:
        return self.dirs.get(controller)

    def create(self) -> None:
        for controller, folder in self.dirs.items():
            if controller == "cpuset":
                self._create_cpuset(folder)
                continue
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as exc:
                raise path_error(self.given, "create", folder, exc) from None

    def _create_cpuset(self, folder: str) -> None:
        # A new cpuset folder starts with empty cpus and mems, and a process cannot join it:
        # fill each new level from its parent.
        mount = self.mounts["cpuset"]
        rel = os.path.relpath(folder, mount)
        current = mount
        for part in rel.split(os.sep):
            parent, current = current, os.path.join(current, part)
            make_folder(self.given, current)
            for name in ("cpuset.cpus", "cpuset.mems"):
                target = os.path.join(current, name)
                try:
                    if read_text(target).strip():
                        continue
                    write_file(target, read_text(os.path.join(parent, name)).strip())
                except OSError as exc:
                    raise path_error(self.given, "write", target, exc) from None

    def apply(self, res: Resources) -> None:
        writes = v1_writes(res)
        for controller, name, value in writes:
            folder = self._dir(controller)
            if folder is None:
                raise Internal(f"linux.cgroupsPath {self.given}: no {controller} hierarchy to set {name} in")
            target = os.path.join(folder, name)
            try:
                write_file(target, value)
            except OSError as exc:
                if name == "memory.limit_in_bytes" and exc.errno == errno.EINVAL and res.memory_swap:
                    # Raising the limit above the current memsw limit: memsw must go first.
                    try:
                        write_file(os.path.join(folder, "memory.memsw.limit_in_bytes"), str(res.memory_swap))
                        write_file(target, value)
                        continue
                    except OSError as again:
                        exc = again
                if name == "memory.memsw.limit_in_bytes" and exc.errno == errno.ENOENT:
                    continue  # swap accounting is off on this host: nothing to limit
                raise path_error(self.given, f"write {value} to", target, exc) from None

    def add(self, pid: int) -> None:
        for folder in self.dirs.values():
            target = os.path.join(folder, "cgroup.procs")
            try:
                write_file(target, str(pid))
            except OSError as exc:
                raise path_error(self.given, f"add pid {pid} to", target, exc) from None

    def pids(self) -> list[int]:
        folder = self._dir("pids") or self._dir("memory") or next(iter(self.dirs.values()), None)
        if folder is None:
            return []
        return base.read_pids(os.path.join(folder, "cgroup.procs"))

    def _freezer_state(self) -> str:
        folder = self._dir("freezer")
        if folder is None:
            raise Internal(f"cgroup {self.path}: no freezer hierarchy on this host")
        return os.path.join(folder, "freezer.state")

    def _set_freezer(self, state: str) -> None:
        target = self._freezer_state()

        def settled() -> bool:
            # Writing again helps a freeze that raced with a fork (what runc does).
            write_file(target, state)
            return read_text(target).strip() == state

        try:
            ok = base.wait_until(settled, base.FREEZE_TIMEOUT_SECONDS)
        except OSError as exc:
            raise path_error(self.given, f"write {state} to", target, exc) from None
        if not ok:
            if state == "FROZEN":
                write_file(target, "THAWED")
            raise Internal(f"cgroup {self.path}: freezer did not reach {state} "
                           f"within {base.FREEZE_TIMEOUT_SECONDS} s")

    def freeze(self) -> None:
        self._set_freezer("FROZEN")

    def thaw(self) -> None:
        self._set_freezer("THAWED")

    def oom_kills(self) -> int:
        folder = self._dir("memory")
        if folder is None:
            return 0
        return read_keyed(os.path.join(folder, "memory.oom_control")).get("oom_kill", 0)

    def open_oom_events(self) -> int:
        folder = self._dir("memory")
        if folder is None:
            raise Internal(f"cgroup {self.path}: no memory hierarchy on this host")
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            ofd = os.open(os.path.join(folder, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            try:
                write_file(os.path.join(folder, "cgroup.event_control"), f"{efd} {ofd}")
            finally:
                os.close(ofd)
        except OSError as exc:
            os.close(efd)
            raise path_error(self.given, "watch OOM in", folder, exc) from None
        return efd

    def drain_oom_events(self, fd: int) -> None:
        try:
            os.eventfd_read(fd)
        except BlockingIOError:
            pass

    def remove(self) -> None:
        failed: list[str] = []
        for folder in self.dirs.values():
            try:
                base.rmdir_retrying(folder)
            except OSError as exc:
                failed.append(f"{folder}: {exc.strerror or exc}")
        if failed:
            raise Internal(f"cgroup {self.path}: cannot remove {'; '.join(failed)}")

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs.values())

    def metrics(self) -> object:
        from wasmvisor.proto.cgroups.v1 import metrics_pb2 as m

        out = m.Metrics()
        pids = self._dir("pids")
        if pids is not None:
            out.pids.current = read_int(os.path.join(pids, "pids.current"))
            out.pids.limit = read_int(os.path.join(pids, "pids.max"))
        acct = self._dir("cpuacct")
        if acct is not None:
            usage = out.cpu.usage
            usage.total = read_int(os.path.join(acct, "cpuacct.usage"))
            ticks = read_keyed(os.path.join(acct, "cpuacct.stat"))
            usage.user = ticks.get("user", 0) * 1_000_000_000 // USER_HZ
            usage.kernel = ticks.get("system", 0) * 1_000_000_000 // USER_HZ
            try:
                usage.per_cpu.extend(int(v) for v in read_text(os.path.join(acct, "cpuacct.usage_percpu")).split())
            except (OSError, ValueError):
                pass
        cpu = self._dir("cpu")
        if cpu is not None:
            stat = read_keyed(os.path.join(cpu, "cpu.stat"))
            out.cpu.throttling.periods = stat.get("nr_periods", 0)
            out.cpu.throttling.throttled_periods = stat.get("nr_throttled", 0)
            out.cpu.throttling.throttled_time = stat.get("throttled_time", 0)
        memory = self._dir("memory")
        if memory is not None:
            _memory_metrics(out.memory, memory)
            oom = read_keyed(os.path.join(memory, "memory.oom_control"))
            out.memory_oom_control.oom_kill_disable = oom.get("oom_kill_disable", 0)
            out.memory_oom_control.under_oom = oom.get("under_oom", 0)
            out.memory_oom_control.oom_kill = oom.get("oom_kill", 0)
        return out


_STAT_FIELDS = ("cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "inactive_anon",
                "active_anon", "inactive_file", "active_file", "unevictable", "hierarchical_memory_limit")
_STAT_RENAMED = {"pgpgin": "pg_pg_in", "pgpgout": "pg_pg_out", "pgfault": "pg_fault",
                 "pgmajfault": "pg_maj_fault", "hierarchical_memsw_limit": "hierarchical_swap_limit"}


def _memory_metrics(stat: object, folder: str) -> None:
    values = read_keyed(os.path.join(folder, "memory.stat"))
    for key, value in values.items():
        name = key
        if key.startswith("total_"):
            inner = key[len("total_"):]
            name = "total_" + _STAT_RENAMED.get(inner, inner)
        else:
            name = _STAT_RENAMED.get(key, key)
        if name in _STAT_FIELDS or name in _STAT_RENAMED.values() or name.startswith("total_"):
            try:
                setattr(stat, name, value)
            except AttributeError:
                pass
    for entry_name, prefix in (("usage", "memory."), ("swap", "memory.memsw."), ("kernel", "memory.kmem."),
                               ("kernel_tcp", "memory.kmem.tcp.")):
        entry = getattr(stat, entry_name)
        entry.usage = read_int(os.path.join(folder, prefix + "usage_in_bytes"))
        entry.max = read_int(os.path.join(folder, prefix + "max_usage_in_bytes"))
        entry.limit = read_int(os.path.join(folder, prefix + "limit_in_bytes"))
        entry.failcnt = read_int(os.path.join(folder, prefix + "failcnt"))
