"""The supervisor's handle on one worker: its channel, its pid, and its end.

The zygote writes a worker's returncode on the worker's status pipe when it reaps it (the fork
protocol, wasmvisor/ipc/zygote.py); WorkerHandle reads it from the other end (its `sentinel`). When the
zygote died first, the worker is the supervisor's child (a child subreaper), and its end comes from the
supervisor's one reaper (wasmvisor.linux.reaper), which the handle asks to watch its pid from the start.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

TYPE_CHECKING = False  # typing is not loaded in the zygote for this module
if TYPE_CHECKING:
    import asyncio
    import struct

    from wasmvisor.ipc import messages
    from wasmvisor.ipc.channel import AsyncChannel
    from wasmvisor.linux.reaper import ChildReaper

ZYGOTE_LOST = 255
"""wait_exit's answer when neither the zygote nor the worker's own status could tell its end."""
ORPHAN_REAP_TRIES = 200
ORPHAN_REAP_RETRY_SECONDS = 0.01
"""How long (tries x seconds) an ended worker of a lost zygote may take to become our child and be
reaped (no status comes if it never does: a process that is no child subreaper)."""


class WorkerHandle:
    """The supervisor's view of one worker: its channel, its pid and its exit."""

    def __init__(
        self,
        pid: int,
        sentinel: int,
        pidfd: int,
        channel: AsyncChannel,
        reaper: ChildReaper,
        status: struct.Struct,
        launcher_closed: Callable[[], bool] = lambda: False,
    ) -> None:
        """`status`: the status pipe's format, the fork protocol's (wasmvisor.ipc.zygote.STATUS); given
        by the zygote's client, so that this module does not import the protocol that imports it."""
        self.pid = pid
        self._format = status
        self._launcher_closed = launcher_closed
        self._sentinel = sentinel
        self._pidfd = pidfd
        self._channel = channel
        self._reaper = reaper
        self._status = b""
        self._exit: asyncio.Future[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watching: asyncio.AbstractEventLoop | None = None
        self._watched_fd = -1
        self._orphaned = False
        self._orphan_tries = 0
        self._reaped: int | None = None
        """The returncode the reaper collected: the worker ended as our child (its zygote had died)."""
        self._closed = False
        os.set_blocking(sentinel, False)
        reaper.watch(pid, self._on_reaped)  # from the start: the zygote may die at any time

    @property
    def sentinel(self) -> int:
        """Readable when the worker has ended (the zygote writes its returncode there). Read
        it only through `wait_exit`."""
        return self._sentinel

    @property
    def returncode(self) -> int | None:
        """As `wait_exit`'s result, once known."""
        if self._exit is not None and self._exit.done() and not self._exit.cancelled():
            return self._exit.result()
        return None

    async def receive(self) -> messages.Message:
        """The worker's next message. EOFError at end of stream; ProtocolError on a bad line."""
        msg = await self._channel.receive()
        if msg is None:
            raise EOFError(f"worker {self.pid} closed its pipe")
        return msg

    async def send(self, msg: messages.Message) -> None:
        """Send one message (BrokenPipeError/ConnectionResetError when the worker is gone)."""
        await self._channel.send(msg)

    async def wait_exit(self) -> int:
        """The worker's end as the zygote saw it: >= 0 its exit code, < 0 minus the signal
        that killed it. When the zygote died first, the worker's own wait status (it is then
        the supervisor's child); 255 when the launcher closed the zygote, or when neither can tell."""
        import asyncio

        if self._exit is None:
            loop = asyncio.get_running_loop()
            self._exit = loop.create_future()
            self._loop = loop
            if self._closed:
                self._exit.set_result(ZYGOTE_LOST)
            else:
                self._watch(loop, self._sentinel, self._on_sentinel)
                self._on_sentinel()
        return await asyncio.shield(self._exit)

    def kill(self, sig: int) -> None:
        """Send `sig` to the worker; nothing when it has ended already. Through a pidfd: the
        pid cannot have been reused by another process in the meantime."""
        try:
            if self._pidfd >= 0:
                signal.pidfd_send_signal(self._pidfd, sig)
            elif self.returncode is None and not self._closed:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """Forget the worker (it keeps running): close the channel and the fds."""
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        self._reaper.unwatch(self.pid, self._on_reaped)
        if self._exit is not None and not self._exit.done():
            self._exit.cancel()
        self._channel.close()
        os.close(self._sentinel)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def _on_sentinel(self) -> None:
        assert self._exit is not None
        try:
            chunk = os.read(self._sentinel, self._format.size - len(self._status))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._status += chunk
            if len(self._status) < self._format.size:
                return
            self._settle(self._format.unpack(self._status)[0])
        elif self._reaped is not None:
            self._settle(self._reaped)  # the zygote died first; the worker ended as our child already
        elif self._pidfd >= 0 and self._loop is not None and not self._launcher_closed():
            # The zygote died first (not stopped by a closing launcher: then the supervisor is
            # going away and its workers outlive it, as runc containers outlive their shim).
            # The worker lives on, re-parented to the supervisor (a child subreaper): its end comes
            # from the reaper (`_on_reaped`); its pidfd says when to expect it.
            self._orphaned = True
            self._orphan_tries = 0
            self._watch(self._loop, self._pidfd, self._orphan_ended)
        else:
            self._settle(ZYGOTE_LOST)

    def _on_reaped(self, returncode: int) -> None:
        """The reaper's word that the worker ended as our child (on the thread that reaped)."""
        self._reaped = returncode
        loop = self._loop
        if self._orphaned and loop is not None:
            try:
                loop.call_soon_threadsafe(self._settle, returncode)
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more

    def _orphan_ended(self) -> None:
        """The worker of a lost zygote has ended (its pidfd is readable): have it collected."""
        if self._exit is None or self._exit.done() or self._closed:
            return
        if self._reaped is None:
            self._reaper.reap()  # its SIGCHLD may not have reached the loop yet
        if self._reaped is not None:
            self._settle(self._reaped)
            return
        if self._orphan_tries >= ORPHAN_REAP_TRIES:
            self._settle(ZYGOTE_LOST)
            return
        # Not re-parented to us yet (the zygote's exit is still being torn down): look again soon.
        self._orphan_tries += 1
        loop = self._loop
        self._unwatch()
        if loop is not None:
            loop.call_later(ORPHAN_REAP_RETRY_SECONDS, self._orphan_ended)

    def _settle(self, code: int) -> None:
        assert self._exit is not None
        self._unwatch()
        self._reaper.unwatch(self.pid, self._on_reaped)
        if not self._exit.done():
            self._exit.set_result(code)

    def _watch(self, loop: asyncio.AbstractEventLoop, fd: int, callback: Callable[[], None]) -> None:
        self._unwatch()
        self._watching, self._watched_fd = loop, fd
        loop.add_reader(fd, callback)

    def _unwatch(self) -> None:
        if self._watching is not None:
            if self._watched_fd >= 0:
                self._watching.remove_reader(self._watched_fd)
            self._watching = None
            self._watched_fd = -1
