"""Kernel settings of the container process: `linux.sysctl` written through /proc/sys once the
worker is in the container's namespaces (an IPC or network namespace has its own copy of those
keys: wasmvisor.worker.spec_linux.parse_sysctl allows only those), and `process.oomScoreAdj`.

Both are written before pivot_root and before the process drops its capabilities: a negative
oom_score_adj needs CAP_SYS_RESOURCE.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from wasmvisor.errors import InvalidArgument
from wasmvisor.worker.spec_linux import Namespace

log = logging.getLogger(__name__)

PROC = "/proc"


def check_network_namespace(settings: Sequence[tuple[str, str]], namespaces: Sequence[Namespace]) -> None:
    """net.* keys in a network namespace joined by path: refused when it is the host's own (the
    worker's, before it enters any), as runc refuses them."""
    if not any(key.startswith("net.") for key, _ in settings):
        return
    joined = next((ns for ns in namespaces if ns.type == "network" and ns.path), None)
    if joined is None:
        return
    try:
        theirs, ours = os.stat(joined.path), os.stat(f"{PROC}/self/ns/net")
    except OSError:
        return  # a missing path is reported when the namespace is joined
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        key = next(key for key, _ in settings if key.startswith("net."))
        raise InvalidArgument(f"linux.sysctl {key}: not allowed in the host's network namespace ({joined.name})")


def write_sysctl(settings: Sequence[tuple[str, str]], proc: str = PROC) -> None:
    """Write each (key, value) to /proc/sys/<key with dots as slashes>, in the caller's namespaces."""
    for key, value in settings:
        path = os.path.join(proc, "sys", *key.split("."))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise InvalidArgument(f"linux.sysctl {key}: no such setting ({path})") from None
        except OSError as exc:
            raise InvalidArgument(f"linux.sysctl {key}: cannot open {path}: {exc.strerror}") from None
        try:
            os.write(fd, value.encode())
        except OSError as exc:
            raise InvalidArgument(f"linux.sysctl {key}={value!r}: {exc.strerror}") from None
        finally:
            os.close(fd)
        log.debug("sysctl %s = %s", key, value)


def write_oom_score_adj(value: int | None, proc: str = PROC) -> None:
    """`process.oomScoreAdj` for this process (and the processes it will fork or exec)."""
    if value is None:
        return
    try:
        with open(f"{proc}/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as exc:
        raise InvalidArgument(f"process.oomScoreAdj {value}: {exc.strerror}") from None
    log.debug("oom_score_adj %d", value)
