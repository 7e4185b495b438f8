"""cgroup v2: one folder in the unified hierarchy (/sys/fs/cgroup/<path>), its controllers enabled
in every ancestor's cgroup.subtree_control."""

from __future__ import annotations

import errno
import os

from wasmvisor.cgroups import base
from wasmvisor.cgroups.base import Cgroup, make_folder, path_error, read_int, read_keyed, read_text, write_file
from wasmvisor.cgroups.resources import Resources, v2_writes
from wasmvisor.errors import Internal
from wasmvisor.linux import syscalls

WANTED_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids")
METRICS_TYPE = "io.containerd.cgroups.v2.Metrics"
IN_MODIFY = 0x2
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC


class V2Cgroup(Cgroup):
    version = 2
    metrics_type = METRICS_TYPE

    def __init__(self, path: str, root: str, given: str = "") -> None:
        self.path = path
        self.given = given or path
        self.root = root
        self.dir = os.path.join(root, path.lstrip("/"))

    def __repr__(self) -> str:
        return f"V2Cgroup({self.path!r})"

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def create(self) -> None:
        rel = os.path.relpath(self.dir, self.root)
        current = self.root
        for part in rel.split(os.sep):
            self._enable_controllers(current)
            current = os.path.join(current, part)
            make_folder(self.given, current)

    def _enable_controllers(self, folder: str) -> None:
        """Let `folder`'s children use the controllers it has (those wasmvisor sets)."""
        try:
            available = read_text(os.path.join(folder, "cgroup.controllers")).split()
            enabled = read_text(os.path.join(folder, "cgroup.subtree_control")).split()
        except OSError as exc:
            raise path_error(self.given, "read the controllers of", folder, exc) from None
        missing = [c for c in WANTED_CONTROLLERS if c in available and c not in enabled]
        if not missing:
            return
        target = os.path.join(folder, "cgroup.subtree_control")
        try:
            write_file(target, " ".join(f"+{name}" for name in missing))
            return
        except OSError:
            pass  # one of them cannot be enabled here: enable the others one by one
        for name in missing:
            try:
                write_file(target, f"+{name}")
            except OSError as exc:
                # EBUSY: `folder` holds processes itself (the "no internal processes" rule);
                # its children then go without that controller, as with runc.
                if exc.errno != errno.EBUSY:
                    raise path_error(self.given, f"enable {name} in", target, exc) from None

    def apply(self, res: Resources) -> None:
        for name, value in v2_writes(res):
            target = self._file(name)
            try:
                write_file(target, value)
            except OSError as exc:
                if name == "memory.swap.max" and exc.errno == errno.ENOENT:
                    continue  # swap accounting is off on this host
                raise path_error(self.given, f"write {value} to", target, exc) from None

    def add(self, pid: int) -> None:
        target = self._file("cgroup.procs")
        try:
            write_file(target, str(pid))
        except OSError as exc:
            raise path_error(self.given, f"add pid {pid} to", target, exc) from None

    def pids(self) -> list[int]:
        return base.read_pids(self._file("cgroup.procs"))

    def _frozen(self) -> bool:
        return read_keyed(self._file("cgroup.events")).get("frozen") == 1

    def _set_frozen(self, frozen: bool) -> None:
        target = self._file("cgroup.freeze")
        try:
            write_file(target, "1" if frozen else "0")
            ok = base.wait_until(lambda: self._frozen() == frozen, base.FREEZE_TIMEOUT_SECONDS)
        except OSError as exc:
            raise path_error(self.given, "write to", target, exc) from None
        if not ok:
            if frozen:
                write_file(target, "0")
            raise Internal(f"cgroup {self.path}: cgroup.events did not show frozen {int(frozen)} "
                           f"within {base.FREEZE_TIMEOUT_SECONDS} s")

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def oom_kills(self) -> int:
        return read_keyed(self._file("memory.events")).get("oom_kill", 0)

    def open_oom_events(self) -> int:
        try:
            fd = syscalls.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except OSError as exc:
            raise Internal(f"cgroup {self.path}: inotify_init1: {os.strerror(exc.errno or 0)}") from None
        target = self._file("memory.events")
        try:
            syscalls.inotify_add_watch(fd, target, IN_MODIFY)
        except OSError as exc:
            os.close(fd)
            raise path_error(self.given, "watch", target, OSError(exc.errno, os.strerror(exc.errno or 0))) from None
        return fd

    def drain_oom_events(self, fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass

    def kill_all(self) -> None:
        try:
            write_file(self._file("cgroup.kill"), "1")  # Linux 5.14+: the whole cgroup at once
        except OSError:
            super().kill_all()

    def remove(self) -> None:
        try:
            base.rmdir_retrying(self.dir)
        except OSError as exc:
            raise Internal(f"cgroup {self.path}: cannot remove {self.dir}: {exc.strerror or exc}") from None

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def metrics(self) -> object:
        from wasmvisor.proto.cgroups.v2 import metrics_pb2 as m

        out = m.Metrics()
        out.pids.current = read_int(self._file("pids.current"))
        out.pids.limit = read_int(self._file("pids.max"))
        cpu = read_keyed(self._file("cpu.stat"))
        for key in ("usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec"):
            setattr(out.cpu, key, cpu.get(key, 0))
        mem = out.memory
        fields = set(m.MemoryStat.DESCRIPTOR.fields_by_name)
        for key, value in read_keyed(self._file("memory.stat")).items():
            if key in fields:
                setattr(mem, key, value)
        mem.usage = read_int(self._file("memory.current"))
        mem.usage_limit = read_int(self._file("memory.max"))
        mem.max_usage = read_int(self._file("memory.peak"))
        mem.swap_usage = read_int(self._file("memory.swap.current"))
        mem.swap_limit = read_int(self._file("memory.swap.max"))
        mem.swap_max_usage = read_int(self._file("memory.swap.peak"))
        events = read_keyed(self._file("memory.events"))
        for key in ("low", "high", "max", "oom", "oom_kill"):
            setattr(out.memory_events, key, events.get(key, 0))
        return out

