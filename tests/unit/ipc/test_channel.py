"""Both ends of a worker's pipe read and write lines the same way: one message a line, at most
LINE_LIMIT bytes, a line cut short an error that names the peer and shows the line."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import pytest

from wasmvisor.ipc.channel import LINE_LIMIT, AsyncChannel, Channel
from wasmvisor.ipc.messages import Exited, Failed, Message, ProtocolError, Ready, StartGuest, encode

Reader = Callable[[bytes], list[Message | None]]


def feed(sock: socket.socket, data: bytes) -> threading.Thread:
    """A peer that writes `data` on `sock` and closes it (on a thread: `data` may exceed the socket's buffer)."""
    def write() -> None:
        with sock:
            try:
                sock.sendall(data)
            except OSError:
                pass  # the reader gave up on a bad line

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def read_with_worker_end(data: bytes) -> list[Message | None]:
    """What the worker's end reads from a peer that wrote `data` and closed: messages, then None."""
    ours, theirs = socket.socketpair()
    writer = feed(theirs, data)
    channel = Channel(ours)
    try:
        got: list[Message | None] = []
        while not got or got[-1] is not None:
            got.append(channel.receive())
        return got
    finally:
        ours.close()
        writer.join()


def read_with_supervisor_end(data: bytes) -> list[Message | None]:
    """As `read_with_worker_end`, for the supervisor's end on an event loop."""
    async def scenario() -> list[Message | None]:
        ours, theirs = socket.socketpair()
        writer = feed(theirs, data)
        channel = await AsyncChannel.open(ours, "worker 42")
        try:
            got: list[Message | None] = []
            while not got or got[-1] is not None:
                got.append(await channel.receive())
            return got
        finally:
            channel.close()
            writer.join()

    return asyncio.run(scenario())


ENDS = pytest.mark.parametrize(("read", "peer"),
                               [(read_with_worker_end, "supervisor"), (read_with_supervisor_end, "worker 42")],
                               ids=["worker-end", "supervisor-end"])


@ENDS
def test_messages_arrive_in_order_then_the_end_of_the_stream(read: Reader, peer: str) -> None:
    sent: list[Message] = [Ready(pid=7), StartGuest(), Exited(code=3, at_ns=1)]
    assert read(b"".join(encode(m) for m in sent)) == [*sent, None]


@ENDS
def test_a_line_of_exactly_the_limit_is_taken(read: Reader, peer: str) -> None:
    empty = encode(Failed(code="INTERNAL", message=""))
    msg = Failed(code="INTERNAL", message="x" * (LINE_LIMIT - len(empty)))
    line = encode(msg)
    assert len(line) == LINE_LIMIT
    assert read(line) == [msg, None]


@ENDS
def test_a_line_over_the_limit_is_a_protocol_error_that_shows_it(read: Reader, peer: str) -> None:
    line = b'{"v": 2, "kind": "failed", "code": "INTERNAL", "message": "' + b"y" * LINE_LIMIT + b'"}\n'
    with pytest.raises(ProtocolError) as err:
        read(line)
    assert str(err.value).startswith(f"ipc line from {peer} is over the {LINE_LIMIT}-byte limit: ")
    assert '{"v": 2, "kind": "failed"' in str(err.value)


@ENDS
def test_a_line_cut_short_by_the_end_of_the_stream_is_a_protocol_error(read: Reader, peer: str) -> None:
    with pytest.raises(ProtocolError) as err:
        read(encode(Ready(pid=1)) + b'{"v": 2, "kind": "ready"')
    assert str(err.value) == f"""{peer} ended its pipe mid-line: b'{{"v": 2, "kind": "ready"'"""


@ENDS
def test_a_malformed_line_is_a_protocol_error(read: Reader, peer: str) -> None:
    with pytest.raises(ProtocolError, match="malformed ipc line 'hello'"):
        read(b"hello\n")


def test_neither_end_sends_a_line_over_the_limit() -> None:
    huge = Failed(code="INTERNAL", message="z" * LINE_LIMIT)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with pytest.raises(ProtocolError, match=f"ipc line to supervisor is {len(encode(huge))} bytes, over the"):
            Channel(ours).send(huge)

        async def supervisor_sends() -> None:
            channel = await AsyncChannel.open(theirs.dup(), "worker 42")
            try:
                await channel.send(huge)
            finally:
                channel.close()

        with pytest.raises(ProtocolError, match="ipc line to worker 42 is"):
            asyncio.run(supervisor_sends())
        ours.setblocking(False)
        with pytest.raises(BlockingIOError):
            ours.recv(1)  # nothing was written


def test_the_worker_end_says_false_when_the_supervisor_is_gone() -> None:
    ours, theirs = socket.socketpair()
    theirs.close()
    with ours:
        assert Channel(ours).send(Ready(pid=1)) is False
