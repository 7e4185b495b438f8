"""Pseudo-terminals: the supervisor makes one for a process with `terminal: true` (the master stays
with it, the slave's path goes to the worker), sets its window size (ResizePty), and the process
makes the slave its controlling terminal (a new session, then TIOCSCTTY), as runc's console does.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

from wasmvisor.errors import InvalidArgument

TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
"""asm-generic/ioctls.h (x86_64 and aarch64 alike): a pty's number, and its slave's lock."""


def open_pty(pts: str = "") -> tuple[int, int, str]:
    """A new pseudo-terminal: (master fd, slave fd, slave path), both close-on-exec; the master
    is non-blocking (the supervisor's event loop reads it). From the devpts instance mounted at
    `pts` (a container's own, reached through /proc/PID/root: then the process finds its terminal
    as /dev/pts/N in the container, as with runc), else from the host's."""
    if not pts:
        master, slave = os.openpty()
        path = os.ttyname(slave)
    else:
        master = os.open(os.path.join(pts, "ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
            (number,) = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))
            path = os.path.join(pts, str(number))
            slave = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except BaseException:
            os.close(master)
            raise
    os.set_blocking(master, False)
    return master, slave, path


def set_window_size(fd: int, width: int, height: int) -> None:
    """TIOCSWINSZ on the terminal `fd`: `width` columns, `height` rows (the process gets SIGWINCH)."""
    if not (0 <= width < 1 << 16 and 0 <= height < 1 << 16):
        raise InvalidArgument(f"window size {width}x{height}: out of range")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def window_size(fd: int) -> tuple[int, int]:
    """(columns, rows) of the terminal `fd`."""
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return cols, rows


def open_slave(path: str) -> int:
    """Open the slave `path` for the process's stdio (not yet its controlling terminal)."""
    try:
        return os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        raise InvalidArgument(f"terminal {path}: cannot open: {exc.strerror}") from None


def take_controlling_terminal(fd: int) -> None:
    """Make the terminal `fd` the calling process's controlling terminal: it starts a session of
    its own first (when it leads one already, that one)."""
    try:
        os.setsid()
    except PermissionError:
        pass  # a session leader already (the worker without a pid namespace)
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
