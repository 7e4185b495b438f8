"""The termination message: when a container fails for a reason the shim knows (its Create failed,
a trap with its message, an OOM kill), one line saying so goes into the host file bind-mounted at
`/dev/termination-log` (the kubelet mounts one at the container's terminationMessagePath, and shows
its text in `kubectl describe pod`), unless the container wrote something there itself.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

DESTINATION = "/dev/termination-log"
MAX_BYTES = 4096
"""The kubelet reads at most this much of the file."""


def log_path(doc: Mapping[str, Any] | None) -> str | None:
    """The host file bind-mounted at /dev/termination-log in the spec `doc`, if any."""
    mounts = (doc or {}).get("mounts") or []
    if not isinstance(mounts, list):
        return None
    for mount in mounts:
        if not isinstance(mount, Mapping) or mount.get("destination") != DESTINATION:
            continue
        options = mount.get("options") or []
        source = mount.get("source")
        is_bind = mount.get("type") == "bind" or (isinstance(options, list) and
                                                  any(o in ("bind", "rbind") for o in options))
        if is_bind and isinstance(source, str) and source.startswith("/"):
            return source
    return None


def exit_reason(status: int, note: str, oom: bool, memory_limit: int | None) -> str:
    """Why a container ended, when the shim knows more than its exit status; "" otherwise."""
    if oom:
        limit = f" of {memory_limit} bytes" if memory_limit else ""
        return f"OOMKilled: the container reached its memory limit{limit} and the kernel's OOM killer ended it " \
               f"(exit status {status})"
    if status != 0 and note:
        return note
    return ""


def write_reason(doc: Mapping[str, Any] | None, reason: str, task_id: str) -> bool:
    """Write `reason` as one line to the spec's termination log when it is an empty regular file;
    True when written. Failures are logged, never raised (the container's end is what matters)."""
    path = log_path(doc)
    if path is None or not reason:
        return False
    line = " ".join(reason.split())
    data = line.encode(errors="replace")[: MAX_BYTES - 1] + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        log.warning("task %s: cannot open its termination log %s: %s", task_id, path, exc.strerror)
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 0:
            return False  # the container's own message (or not a file the kubelet made)
        os.write(fd, data)
        log.info("task %s: termination message written to %s: %s", task_id, path, line)
        return True
    except OSError as exc:
        log.warning("task %s: cannot write its termination log %s: %s", task_id, path, exc.strerror)
        return False
    finally:
        os.close(fd)
