"""What cgroup v1 and v2 share: the Cgroup contract, file access whose errors name the cgroup, and
the waits (a freezer settling, a busy folder emptying)."""

from __future__ import annotations

import abc
import errno
import os
import time
from collections.abc import Callable
from typing import Any

from wasmvisor.cgroups.resources import Resources
from wasmvisor.errors import Internal, InvalidArgument, ShimError

REMOVE_TIMEOUT_SECONDS = 1.0
"""How long rmdir is retried while a cgroup is still busy (its last process just ended)."""
FREEZE_TIMEOUT_SECONDS = 2.0
POLL_SECONDS = 0.005

_USER_ERRORS = {errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EINVAL, errno.EACCES, errno.EPERM,
                errno.ENAMETOOLONG, errno.ENOENT}
"""errnos that mean the path (or the value) given is wrong, not that the host is."""


def path_error(given: str, action: str, path: str, exc: OSError) -> ShimError:
    """`linux.cgroupsPath /x/y: cannot create /sys/fs/cgroup/memory/x/y: Read-only file system`."""
    cls: type[ShimError] = InvalidArgument if exc.errno in _USER_ERRORS else Internal
    return cls(f"linux.cgroupsPath {given}: cannot {action} {path}: {exc.strerror or exc}")


def make_folder(given: str, path: str) -> None:
    """mkdir `path` (one level); an existing folder is fine, an existing file is ENOTDIR."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise path_error(given, "create", path, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))) from None
    except OSError as exc:
        raise path_error(given, "create", path, exc) from None


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_int(path: str, default: int = 0) -> int:
    """The number in a one-value cgroup file; `max` (or a missing file) gives `default`."""
    try:
        text = read_text(path).strip()
    except OSError:
        return default
    if text in ("", "max"):
        return default
    try:
        return int(text)
    except ValueError:
        return default


def read_keyed(path: str) -> dict[str, int]:
    """A `key value` per line file (memory.stat, cpu.stat, memory.events) as a dict; {} if missing."""
    try:
        text = read_text(path)
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def write_file(path: str, value: str) -> None:
    # One write(2) of the whole value: cgroup files take a value per write.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_pids(path: str) -> list[int]:
    try:
        return [int(line) for line in read_text(path).split()]
    except FileNotFoundError:
        return []


def rmdir_retrying(path: str, timeout: float = REMOVE_TIMEOUT_SECONDS) -> None:
    """rmdir `path` (absent is fine), retrying while it is busy for up to `timeout` seconds."""
    give_up = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= give_up:
                raise
        time.sleep(POLL_SECONDS)


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    give_up = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= give_up:
            return False
        time.sleep(POLL_SECONDS)
    return True


class Cgroup(abc.ABC):
    """One container's cgroup (in every v1 hierarchy, or one v2 folder)."""

    version: int
    path: str
    """The cgroup path from a hierarchy's root, e.g. `/default/hello`."""
    given: str
    """`linux.cgroupsPath` as the spec had it (for messages)."""
    metrics_type: str
    """The Any type_url of `metrics()`."""

    @property
    def ready(self) -> bool:
        """Whether the cgroup is there for processes to join and files to watch (a systemd scope is
        made with its first process, in `add`)."""
        return True

    @abc.abstractmethod
    def create(self) -> None:
        """Make the cgroup (and missing parents); existing ones are reused."""

    @abc.abstractmethod
    def apply(self, res: Resources) -> None:
        """Write `res` into the cgroup's files."""

    @abc.abstractmethod
    def add(self, pid: int) -> None:
        """Move process `pid` (and its future children) into the cgroup."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Every process in the cgroup."""

    @abc.abstractmethod
    def freeze(self) -> None: ...

    @abc.abstractmethod
    def thaw(self) -> None: ...

    @abc.abstractmethod
    def metrics(self) -> Any:
        """The containerd Metrics protobuf message for this hierarchy."""

    @abc.abstractmethod
    def oom_kills(self) -> int:
        """How many processes of the cgroup the OOM killer has killed so far."""

    @abc.abstractmethod
    def open_oom_events(self) -> int:
        """An fd that becomes readable when the cgroup's memory events change; the caller reads
        it with `drain_oom_events` and closes it."""

    @abc.abstractmethod
    def drain_oom_events(self, fd: int) -> None: ...

    @abc.abstractmethod
    def remove(self) -> None:
        """rmdir the cgroup (the leaf only), retrying a moment while it is busy; absent is fine."""

    @abc.abstractmethod
    def exists(self) -> bool: ...

    def kill_all(self) -> None:
        """SIGKILL every process of the cgroup (what is left of a task whose supervisor died)."""
        import signal

        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
