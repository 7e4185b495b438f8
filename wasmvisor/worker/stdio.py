"""The container's stdio as the worker opens it at Create (as containerd's runc shim does), and
put on fds 0, 1, 2 where the guest (or a native program) inherits it."""

from __future__ import annotations

import os
import stat
import sys
import urllib.parse

from wasmvisor.engines.base import Stdio
from wasmvisor.errors import InvalidArgument, NotFound, Unimplemented
from wasmvisor.ipc.messages import Configure
from wasmvisor.linux import pty


def open_stdio(config: Configure) -> Stdio:
    """Open the container's stdio as the runc shim does: "" is /dev/null, a FIFO is opened
    O_RDWR for output (never blocks, and no EPIPE while containerd restarts) and non-blocking
    for input (then made blocking), a regular file is appended to, `file:///path` is created
    and appended to. With a terminal and no stderr, stderr goes where stdout goes; with the
    supervisor's pty (`console`), all three are its slave (see open_console)."""
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
        return _open_path(uri, name, os.O_RDWR)
    return _open_path(uri, name, os.O_WRONLY | os.O_APPEND)


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
