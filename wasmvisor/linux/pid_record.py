"""A process named so that a recycled pid never passes for it: its pid and its start time.

The supervisor writes one into each task's bundle as `init.pid` (for the task's process: the worker,
which may have exec'd a native program since, and so carries that program's title); the `delete`
action reads it back to kill what a dead supervisor left running.

The format, for every reader (the `delete` action, and any front end that mirrors it): ASCII
`PID START`, the decimal pid, one space, the decimal start time of that process (field 22 of
`/proc/PID/stat`: clock ticks after boot, unchanged by exec), no newline. A pid alone (a file
written by an older wasmvisor) is a pid without a start time.

Cheap to import (it imports nothing): `delete` reads it on its fast path.
"""

from __future__ import annotations


def start_time(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks after boot), or None when it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # After the parenthesised command name (which may hold ") "): state, then field 4 onwards.
    fields = stat[stat.rfind(b")") + 2:].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def encode(pid: int) -> bytes:
    """The record of the running process `pid` (the pid alone when its start time cannot be read)."""
    start = start_time(pid)
    return b"%d" % pid if start is None else b"%d %d" % (pid, start)


def decode(data: bytes) -> tuple[int, int | None] | None:
    """(pid, start time or None) from a record, or None when it names no process."""
    words = data.split()
    if not 1 <= len(words) <= 2 or not all(w.isdigit() for w in words):
        return None
    pid = int(words[0])
    if pid <= 0:
        return None
    return pid, int(words[1]) if len(words) == 2 else None


def read(path: str) -> tuple[int, int | None] | None:
    """The record in file `path`, or None when the file is absent or holds none."""
    try:
        with open(path, "rb") as f:
            return decode(f.read(64))
    except OSError:
        return None


def is_running(pid: int, start: int) -> bool:
    """Whether the process the record (pid, start) names still runs (not another one on that pid)."""
    return start_time(pid) == start
