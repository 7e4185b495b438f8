"""A process's terminal as the supervisor holds it (`terminal: true`): a pty whose slave the worker
opens and makes the process's controlling terminal, and whose master the supervisor copies to the
stdout FIFO and from the stdin FIFO (a terminal has no separate stderr), as runc's shim does with
its console socket. ResizePty sets the window size on the master.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import urllib.parse
from collections.abc import Callable

from wasmvisor import errors
from wasmvisor.linux import pty

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
DRAIN_SECONDS = 2.0
"""How long an ended process's exit waits for the rest of its terminal output to be copied (a
child it left behind may keep the terminal open for ever)."""


class _Pump:
    """Copies `src` to `dst` (both non-blocking) on the event loop until `src` ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, src: int, dst: int, on_end: Callable[[], None]) -> None:
        self.loop, self.src, self.dst, self.on_end = loop, src, dst, on_end
        self.pending = b""
        self.ended = False
        loop.add_reader(src, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.src, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO on a master: every slave end is closed, the process has gone
            data = b""
        if not data:
            self.stop()
            self.on_end()
            return
        self.pending += data
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                written = os.write(self.dst, self.pending)
            except BlockingIOError:
                # Full: stop reading until the reader takes some (back-pressure, nothing dropped).
                self.loop.remove_reader(self.src)
                self.loop.add_writer(self.dst, self._writable)
                return
            except OSError as exc:
                log.debug("terminal copy to fd %d ended: %s", self.dst, exc.strerror)
                self.pending = b""
                return
            self.pending = self.pending[written:]

    def _writable(self) -> None:
        self._flush()
        if not self.pending:
            self.loop.remove_writer(self.dst)
            if not self.ended:
                self.loop.add_reader(self.src, self._readable)

    def stop(self) -> None:
        if not self.ended:
            self.ended = True
            self.loop.remove_reader(self.src)
            self.loop.remove_writer(self.dst)


class Console:
    """One pty: `path` goes to the worker; `start` copies once the worker has opened it."""

    def __init__(self, pts: str = "") -> None:
        """`pts`: the devpts to take the pty from (pty.open_pty); the host's when empty."""
        try:
            self.master, self._slave, self.path = pty.open_pty(pts)
        except OSError as exc:
            where = pts or "/dev/pts"
            raise errors.InvalidArgument(f"terminal: cannot open a pty in {where}: {exc.strerror}") from None
        self._fds: list[int] = []
        self._pumps: list[_Pump] = []
        self._done = asyncio.Event()

    def start(self, stdin: str, stdout: str, what: str) -> None:
        """Copy the master to `stdout` and `stdin` to the master; our slave end closes, so that the
        master ends (EIO) when the process's ends have closed."""
        loop = asyncio.get_running_loop()
        os.close(self._slave)
        self._slave = -1
        out = _open_output(stdout, what) if stdout else os.open(os.devnull, os.O_WRONLY | os.O_NONBLOCK)
        self._fds.append(out)
        self._pumps.append(_Pump(loop, self.master, out, self._output_ended))
        if stdin:
            fd = _open_fifo_or_file(stdin, os.O_RDONLY | os.O_NONBLOCK, f"{what}: stdin")
            self._fds.append(fd)
            self._pumps.append(_Pump(loop, fd, self.master, lambda: None))

    def _output_ended(self) -> None:
        self._done.set()

    async def drained(self, timeout: float = DRAIN_SECONDS) -> None:
        """Wait until the process's terminal output is copied (at most `timeout` seconds)."""
        if not self._pumps:
            return
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            log.warning("terminal %s still open %.0f s after its process ended: output after that is lost",
                        self.path, timeout)

    def resize(self, width: int, height: int) -> None:
        pty.set_window_size(self.master, width, height)

    def close(self) -> None:
        """Stop copying and close every fd (the stdout FIFO's reader then sees EOF)."""
        for pump in self._pumps:
            pump.stop()
        for fd in (*self._fds, self._slave, self.master):
            if fd >= 0:
                os.close(fd)
        self._fds, self._slave, self.master = [], -1, -1
        self._done.set()


def _open_output(uri: str, what: str) -> int:
    if uri.startswith("file://"):
        path = urllib.parse.unquote(urllib.parse.urlparse(uri).path)
        return _open_fifo_or_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, f"{what}: stdout")
    # A FIFO is opened read-write: never blocks, and no EPIPE while its reader comes back.
    return _open_fifo_or_file(uri, os.O_RDWR | os.O_NONBLOCK, f"{what}: stdout", fifo_only_flags=True)


def _open_fifo_or_file(path: str, flags: int, what: str, fifo_only_flags: bool = False) -> int:
    try:
        if fifo_only_flags and not stat.S_ISFIFO(os.stat(path).st_mode):
            flags = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK
        return os.open(path, flags | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise errors.InvalidArgument(f"{what} {path}: cannot open: {exc.strerror}") from None
