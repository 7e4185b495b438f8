"""What /proc says about other processes: titles, children, CPU time, start time, PSS, unix sockets.

Read by the operator's commands (`wasmvisor ps`, `wasmvisor doctor`), never on a task's path. The
parsers take the file's text, so that they are tested without processes; the readers return None (or
nothing) for a process that has gone meanwhile, which is the normal case for a listing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_UNIX_LISTENING = 0x10000
"""__SO_ACCEPTCON in /proc/net/unix's Flags column."""


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat that an operator wants."""

    ppid: int
    state: str
    cpu_seconds: float
    """User and system time of the process itself (its children's not counted)."""
    started_ticks: int
    """Clock ticks after boot at which it started."""


def parse_stat(text: str) -> ProcStat:
    """/proc/PID/stat's text; the command (field 2) may hold spaces and parentheses."""
    rest = text.rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state): field N is rest[N - 3]
    utime, stime = int(rest[11]), int(rest[12])
    return ProcStat(ppid=int(rest[1]), state=rest[0], cpu_seconds=(utime + stime) / CLOCK_TICKS,
                    started_ticks=int(rest[19]))


def parse_pss(text: str) -> int | None:
    """Bytes of the `Pss:` line of /proc/PID/smaps_rollup."""
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def parse_boot_time(text: str) -> int:
    """Seconds since the epoch at boot, from /proc/stat's `btime` line."""
    for line in text.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise ValueError("/proc/stat has no btime line")


def parse_unix_sockets(text: str) -> dict[int, str]:
    """Inode -> path of the listening unix sockets bound to a path, from /proc/net/unix."""
    found: dict[int, str] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or not fields[7].startswith("/"):
            continue  # unnamed or abstract
        if int(fields[3], 16) & _UNIX_LISTENING:
            found[int(fields[6])] = fields[7]
    return found


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def title(pid: int) -> str | None:
    """The process's command line (its title, for ours) with NULs as spaces."""
    text = _read(f"/proc/{pid}/cmdline")
    return None if text is None else text.replace("\0", " ").strip()


def stat(pid: int) -> ProcStat | None:
    text = _read(f"/proc/{pid}/stat")
    try:
        return None if text is None else parse_stat(text)
    except (IndexError, ValueError):
        return None


def pss(pid: int) -> int | None:
    """Proportional set size in bytes (needs the right to read the process's memory maps)."""
    text = _read(f"/proc/{pid}/smaps_rollup")
    return None if text is None else parse_pss(text)


def boot_time() -> int:
    return parse_boot_time(_read("/proc/stat") or "")


def children(pid: int) -> list[int]:
    text = _read(f"/proc/{pid}/task/{pid}/children") or ""
    return [int(x) for x in text.split()]


def pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets among the process's open files."""
    found: set[int] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def unix_sockets() -> dict[int, str]:
    """Listening unix sockets of this network namespace: inode -> path."""
    return parse_unix_sockets(_read("/proc/net/unix") or "")


def environ(pid: int) -> dict[str, str] | None:
    """The environment the process was started with (root, or the same uid)."""
    text = _read(f"/proc/{pid}/environ")
    if text is None:
        return None
    return dict(item.split("=", 1) for item in text.split("\0") if "=" in item)
