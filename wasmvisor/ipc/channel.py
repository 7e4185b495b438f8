"""One line channel for both ends of a worker's pipe: a message a line (wasmvisor.ipc.messages), at
most LINE_LIMIT bytes each, in either direction.

The worker's end (`Channel`) blocks: the worker has nothing else to do while it waits. The supervisor's
(`AsyncChannel`) runs on its event loop. Both check lines the same way (`_line_of`, `_message_of`): a
line over the limit, or one cut short by the end of the stream, is a `messages.ProtocolError` that
names the peer and shows the line; the end of the stream between lines is `None`.

Imported by the worker: no asyncio at the top (the zygote preloads the worker, and every worker would
carry it).
"""

from __future__ import annotations

import logging
import socket

from wasmvisor.ipc import messages

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)

LINE_LIMIT = 1 << 20
"""The longest line either end sends or accepts, its newline included."""
SHOWN = 200
"""Bytes of a bad line an error shows."""


def _line_of(msg: messages.Message, peer: str) -> bytes:
    """`msg` as one line for `peer`; ProtocolError when it is over the limit (the peer would refuse it)."""
    line = messages.encode(msg)
    if len(line) > LINE_LIMIT:
        raise messages.ProtocolError(f"ipc line to {peer} is {len(line)} bytes, over the {LINE_LIMIT}-byte limit: "
                                     f"{line[:SHOWN]!r}")
    return line


def _message_of(line: bytes, peer: str) -> messages.Message | None:
    """The message on `line` as read from `peer` (newline included); None at the end of the stream (an
    empty line). ProtocolError for a line over the limit, cut short, or malformed."""
    if not line:
        return None
    if len(line) > LINE_LIMIT:
        raise messages.ProtocolError(f"ipc line from {peer} is over the {LINE_LIMIT}-byte limit: {line[:SHOWN]!r}")
    if not line.endswith(b"\n"):
        raise messages.ProtocolError(f"{peer} ended its pipe mid-line: {line[:SHOWN]!r}")
    return messages.decode(line)


class Channel:
    """The worker's end: blocking, on its socket."""

    def __init__(self, sock: socket.socket, peer: str = "supervisor") -> None:
        sock.setblocking(True)
        self.peer = peer
        self._sock = sock
        self._reader = sock.makefile("rb")

    def receive(self) -> messages.Message | None:
        """The next message, or None at the end of the stream."""
        msg = _message_of(self._reader.readline(LINE_LIMIT + 1), self.peer)
        if msg is not None:
            log.debug("ipc <- %s", msg.kind)
        return msg

    def send(self, msg: messages.Message) -> bool:
        """Send `msg`; False (logged) when the peer is gone: the worker goes on (its end still reaches
        the supervisor, through the zygote's status pipe)."""
        line = _line_of(msg, self.peer)
        try:
            self._sock.sendall(line)
        except OSError as exc:
            log.warning("cannot send %s to the %s: %s", msg.kind, self.peer, exc.strerror)
            return False
        log.debug("ipc -> %s", msg.kind)
        return True


class AsyncChannel:
    """The supervisor's end: on its event loop (`open` it on the socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        self.peer = peer
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket, peer: str) -> AsyncChannel:
        """A channel on the connected `sock`, to `peer` (as errors name it: `worker 1234`)."""
        import asyncio

        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=LINE_LIMIT)
        return cls(reader, writer, peer)

    async def receive(self) -> messages.Message | None:
        """The next message, or None at the end of the stream."""
        import asyncio

        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # the end of the stream: between lines, or within one
            line = exc.partial
        except asyncio.LimitOverrunError:  # over the limit: the buffer holds more than LINE_LIMIT bytes
            line = await self._reader.read(LINE_LIMIT + 1)
        return _message_of(line, self.peer)

    async def send(self, msg: messages.Message) -> None:
        """Send `msg` (BrokenPipeError/ConnectionResetError when the peer is gone)."""
        self._writer.write(_line_of(msg, self.peer))
        await self._writer.drain()

    def close(self) -> None:
        """Close the socket (the peer reads the end of the stream)."""
        self._writer.close()
