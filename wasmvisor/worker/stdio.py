"""The container's stdio as the worker opens it at Create (as containerd's runc shim does), and
put on fds 0, 1, 2 where the guest (or a native program) inherits it."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import sys
import time
import urllib.parse

from wasmvisor.engines.base import Stdio
from wasmvisor.errors import InvalidArgument, NotFound, Unimplemented
from wasmvisor.ipc.messages import Configure
from wasmvisor.linux import pty

log = logging.getLogger(__name__)

READER_WAIT_SECONDS = 10.0
"""How long Create waits for an output FIFO's reader (ctr, containerd's CRI log copier) before it opens
the FIFO anyway: what the guest writes to a FIFO that nobody has open for reading is lost when the guest
ends, so the runc shim waits for the reader too (its blocking O_WRONLY open, under Create's deadline).
The reader opens before Create; on a loaded node its open may be scheduled late."""


def open_stdio(config: Configure) -> Stdio:
    """Open the container's stdio: "" is /dev/null; a FIFO for output once it has a reader (as the
    runc shim waits for one: `READER_WAIT_SECONDS`), then O_RDWR (no EPIPE while containerd
    restarts, where the runc shim keeps a reader of its own); a FIFO for input non-blocking (then made
    blocking); a regular file is appended to, `file:///path` is created and appended to. With a
    terminal and no stderr, stderr goes where stdout goes; with the supervisor's pty (`console`), all
    three are its slave (see open_console)."""
    if config.console:
        return open_console(config.console)
    fds: list[int] = []
    try:
        fds.append(_open_input(config.stdin))
        fds.append(_open_output(config.stdout, "stdout"))
        stderr = config.stderr
        if config.terminal and not stderr:
            stderr = config.stdout
        if stderr and stderr == config.stdout and not _is_fifo(stderr):
            fds.append(os.dup(fds[1]))  # one file, one offset: lines interleave in order
        else:
            fds.append(_open_output(stderr, "stderr"))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return Stdio(stdin=fds[0], stdout=fds[1], stderr=fds[2])


def open_console(path: str) -> Stdio:
    """The pty slave `path` on fds 0, 1 and 2, made the calling process's controlling terminal
    (call it in the container process, after any fork)."""
    fd = pty.open_slave(path)
    try:
        pty.take_controlling_terminal(fd)
        return Stdio(stdin=fd, stdout=os.dup(fd), stderr=os.dup(fd))
    except OSError as exc:
        os.close(fd)
        raise InvalidArgument(f"terminal {path}: cannot make it the controlling terminal: {exc.strerror}") from None


DRAIN_SECONDS = 1.0
"""How long a guest's exit waits for its output FIFOs to be read (`wait_drained`)."""
FIONREAD = 0x541B
"""asm-generic/ioctls.h (x86_64 and aarch64): the bytes a pipe holds unread. Not from `termios`: the guest's
seccomp filter is in place by then, and it refuses the executable mapping a new C module would need."""


def wait_drained(fds: tuple[int, ...] = (1, 2), limit: float = DRAIN_SECONDS) -> None:
    """Return once no output FIFO among `fds` holds unread bytes, or after `limit` seconds: the guest has
    ended, and its exit is reported only once its reader has what it wrote. `ctr run` (1.6) cancels its
    FIFO reader when the exit comes; a reader whose open(2) had returned but whose goroutine had not run
    yet (a loaded node) was closed unread, and `ctr run` printed nothing with exit 0. The runner does the
    same (runner.c wait_drained). A reader that never reads costs the exit `limit` seconds."""
    deadline = time.monotonic() + limit
    for fd in fds:
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                continue
            while int.from_bytes(fcntl.ioctl(fd, FIONREAD, bytes(4)), sys.byteorder) > 0:
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.001)
        except OSError:
            continue


def install_stdio(stdio: Stdio, log_fd: int) -> None:
    """Put the stdio on fds 0, 1, 2 (the engine inherits them); Python's own sys.stdout and
    sys.stderr move to the log so that nothing of the worker's lands in the guest's output."""
    for fd, target in ((stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)):
        os.dup2(fd, target)
    for fd in {stdio.stdin, stdio.stdout, stdio.stderr} - {0, 1, 2}:
        os.close(fd)
    sys.stdout = sys.stderr = open(log_fd, "w", buffering=1, closefd=False)  # noqa: SIM115


def _open_input(path: str) -> int:
    if not path:
        return os.open(os.devnull, os.O_RDONLY)
    kind = _stat_kind(path, "stdin")
    if kind == "fifo":
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        return fd
    return _open_path(path, "stdin", os.O_RDONLY)


def _open_output(uri: str, name: str) -> int:
    if not uri:
        return os.open(os.devnull, os.O_WRONLY)
    if "://" in uri:
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme != "file":
            raise Unimplemented(f"{name} {uri}: STDIO scheme {parsed.scheme!r} is not supported")
        path = urllib.parse.unquote(parsed.path)
        try:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        except OSError as exc:
            raise InvalidArgument(f"{name} {uri}: {exc.strerror}") from None
        return _open_path(path, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    kind = _stat_kind(uri, name)
    if kind == "fifo":
        probe = _reader_present(uri, name)
        try:
            return _open_path(uri, name, os.O_RDWR)
        finally:
            if probe is not None:  # closed once our end is open: the reader never sees no writer (EOF)
                os.close(probe)
    return _open_path(uri, name, os.O_WRONLY | os.O_APPEND)


def _reader_present(path: str, name: str) -> int | None:
    """Wait until the FIFO `path` has a reader: a write-only fd of it then (open without O_NONBLOCK's
    ENXIO), None when none came within READER_WAIT_SECONDS (warned: output may be lost)."""
    deadline = time.monotonic() + READER_WAIT_SECONDS
    pause = 0.0005
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                return None  # the open that follows names the problem
        if time.monotonic() >= deadline:
            log.warning("%s %s: no reader after %.0f s; what the process writes before one opens it is lost",
                        name, path, READER_WAIT_SECONDS)
            return None
        time.sleep(pause)
        pause = min(2 * pause, 0.02)


def _open_path(path: str, name: str, flags: int) -> int:
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        raise InvalidArgument(f"{name} {path}: cannot open: {exc.strerror}") from None


def _stat_kind(path: str, name: str) -> str:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise NotFound(f"{name} {path}: no such file or FIFO") from None
    except OSError as exc:
        raise InvalidArgument(f"{name} {path}: {exc.strerror}") from None
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISREG(mode) or stat.S_ISCHR(mode):
        return "file"
    raise InvalidArgument(f"{name} {path}: not a FIFO or a file")


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False
