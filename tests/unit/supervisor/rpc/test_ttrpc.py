"""ttrpc server and client over real unix sockets, plus hand-built frames on raw connections."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import struct
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from google.protobuf import empty_pb2
from google.protobuf.wrappers_pb2 import StringValue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmvisor.errors import Code, DeadlineExceeded, NotFound, ResourceExhausted, RpcError, Unavailable
from wasmvisor.proto import ttrpc_pb2
from wasmvisor.supervisor.rpc.service import Call, Method, Service
from wasmvisor.supervisor.rpc.ttrpc import MAX_DATA, encode_ok_response
from wasmvisor.supervisor.rpc.ttrpc_client import TtrpcClient
from wasmvisor.supervisor.rpc.ttrpc_server import TtrpcServer

T = TypeVar("T")
SVC = "test.v1.Echo"


def run(coro: Awaitable[T]) -> T:
    """Run `coro` on a fresh loop and fail on any exception the loop saw but nobody handled."""
    leaked: list[dict[str, Any]] = []

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: leaked.append(ctx))
        return await asyncio.wait_for(coro, 20)

    result = asyncio.run(main())
    assert not leaked, leaked
    return result


@pytest.fixture
def sock_path() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="wv-ttrpc-")  # short: unix socket paths are limited to 107 bytes
    yield os.path.join(folder, "s.sock")
    shutil.rmtree(folder, ignore_errors=True)


def bound_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen()
    return sock


@asynccontextmanager
async def serving(path: str, *services: Service, **kwargs: Any) -> AsyncIterator[TtrpcServer]:
    server = TtrpcServer(services or [echo_service()], **kwargs)
    await server.start(bound_socket(path))
    try:
        yield server
    finally:
        await server.close()


Handler = Callable[[Any, Call], Awaitable[Any]]


def service(name: str = SVC, **handlers: Handler) -> Service:
    return Service(name, {m: Method(m, StringValue, StringValue, h) for m, h in handlers.items()})


async def echo(request: StringValue, call: Call) -> StringValue:
    return StringValue(value=request.value)


def echo_service(**extra: Handler) -> Service:
    return service(Echo=echo, **extra)


# --- raw frames -------------------------------------------------------------------------------


def frame(stream_id: int, data: bytes, msg_type: int = 1, flags: int = 0) -> bytes:
    return struct.pack(">IIBB", len(data), stream_id, msg_type, flags) + data


def request_bytes(method: str = "Echo", payload: bytes | None = None, service_name: str = SVC) -> bytes:
    if payload is None:
        payload = StringValue(value="hi").SerializeToString()
    return ttrpc_pb2.Request(service=service_name, method=method, payload=payload).SerializeToString()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, Any]:
    length, stream_id, msg_type, flags = struct.unpack(">IIBB", await reader.readexactly(10))
    assert (msg_type, flags) == (2, 0)
    return stream_id, ttrpc_pb2.Response.FromString(await reader.readexactly(length))


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """What is left before end of stream. A server that hangs up on unread data makes the kernel
    report ECONNRESET once the bytes it did send are read; that is an end too."""
    data = bytearray()
    while True:
        try:
            chunk = await reader.read(65536)
        except ConnectionResetError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


async def raw_connection(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(path)


# --- unary calls ------------------------------------------------------------------------------


def test_unary_round_trip_carries_metadata_and_deadline(sock_path: str) -> None:
    seen: list[Call] = []

    async def remember(request: StringValue, call: Call) -> StringValue:
        seen.append(call)
        return StringValue(value=request.value.upper())

    async def scenario() -> str:
        async with serving(sock_path, service(Remember=remember)):
            client = await TtrpcClient.connect("unix://" + sock_path)
            reply = await client.call(
                SVC,
                "Remember",
                StringValue(value="abc"),
                StringValue,
                timeout=30,
                metadata={"Containerd-Namespace-TTRPC": "k8s.io", "x": "1"},
            )
            await client.close()
            return reply.value

    assert run(scenario()) == "ABC"
    (call,) = seen
    assert (call.service, call.method) == (SVC, "Remember")
    assert call.metadata == {"containerd-namespace-ttrpc": "k8s.io", "x": "1"}
    assert call.namespace == "k8s.io"
    assert call.deadline is not None


def test_success_response_has_explicit_zero_status_like_go(sock_path: str) -> None:
    async def scenario() -> bytes:
        async with serving(sock_path):
            reader, writer = await raw_connection(sock_path)
            writer.write(frame(1, request_bytes()))
            header = await reader.readexactly(10)
            data = await reader.readexactly(struct.unpack(">I", header[:4])[0])
            writer.close()
            return header + data

    raw = run(scenario())
    assert raw[4:10] == b"\x00\x00\x00\x01\x02\x00"
    assert raw[10:12] == b"\x0a\x00"
    assert StringValue.FromString(ttrpc_pb2.Response.FromString(raw[10:]).payload).value == "hi"


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 70000, MAX_DATA - 20])
def test_hand_encoded_success_response_matches_protobuf(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    raw = encode_ok_response(7, payload)
    length, stream_id, msg_type, flags = struct.unpack(">IIBB", raw[:10])
    assert (length, stream_id, msg_type, flags) == (len(raw) - 10, 7, 2, 0)
    response = ttrpc_pb2.Response.FromString(raw[10:])
    assert response.HasField("status") and response.status.code == 0
    assert response.payload == payload


def test_wait_does_not_hold_up_kill_on_the_same_connection(sock_path: str) -> None:
    released = asyncio.Event()

    async def wait(request: StringValue, call: Call) -> StringValue:
        await released.wait()
        return StringValue(value="exited " + request.value)

    async def kill(request: StringValue, call: Call) -> StringValue:
        released.set()
        return StringValue(value="killed")

    async def scenario() -> None:
        async with serving(sock_path, service(Wait=wait, Kill=kill)):
            client = await TtrpcClient.connect(sock_path)
            waits = [
                asyncio.create_task(client.call(SVC, "Wait", StringValue(value=str(i)), StringValue)) for i in range(49)
            ]
            await asyncio.sleep(0.05)
            assert not any(w.done() for w in waits)
            assert (await client.call(SVC, "Kill", StringValue(), StringValue)).value == "killed"
            replies = await asyncio.gather(*waits)
            assert [r.value for r in replies] == [f"exited {i}" for i in range(49)]
            await client.close()

    run(scenario())


def test_fifty_calls_answered_in_reverse_order_each_get_their_own_answer(sock_path: str) -> None:
    done = [asyncio.Event() for _ in range(50)]

    async def chained(request: StringValue, call: Call) -> StringValue:
        i = int(request.value)
        if i < 49:
            await done[i + 1].wait()
        done[i].set()
        return StringValue(value=f"answer {i}")

    async def scenario() -> list[int]:
        finished: list[int] = []
        async with serving(sock_path, service(Chained=chained)):
            client = await TtrpcClient.connect(sock_path)

            async def one(i: int) -> None:
                reply = await client.call(SVC, "Chained", StringValue(value=str(i)), StringValue)
                assert reply.value == f"answer {i}"
                finished.append(i)

            await asyncio.gather(*(one(i) for i in range(50)))
            await client.close()
        return finished

    assert run(scenario()) == list(range(49, -1, -1))


# --- routing and handler errors ---------------------------------------------------------------


def test_unknown_service_and_method_are_unimplemented(sock_path: str) -> None:
    async def scenario() -> list[RpcError]:
        errors = []
        async with serving(sock_path):
            client = await TtrpcClient.connect(sock_path)
            for svc, method in (("containerd.task.v3.Task", "Create"), (SVC, "Nope")):
                with pytest.raises(RpcError) as err:
                    await client.call(svc, method, StringValue(), StringValue)
                errors.append(err.value)
            await client.close()
        return errors

    unknown_service, unknown_method = run(scenario())
    assert unknown_service.code == Code.UNIMPLEMENTED
    assert unknown_service.message == "service containerd.task.v3.Task"
    assert unknown_method.code == Code.UNIMPLEMENTED
    assert unknown_method.message == "method Nope"


def test_handler_not_found_becomes_code_5_with_its_message(sock_path: str) -> None:
    async def missing(request: StringValue, call: Call) -> StringValue:
        raise NotFound("container abc: not found")

    async def scenario() -> RpcError:
        async with serving(sock_path, service(Missing=missing)):
            client = await TtrpcClient.connect(sock_path)
            with pytest.raises(RpcError) as err:
                await client.call(SVC, "Missing", StringValue(), StringValue)
            await client.close()
        return err.value

    err = run(scenario())
    assert (err.code, err.message) == (Code.NOT_FOUND, "container abc: not found")
    assert int(err.code) == 5


def test_handler_crash_is_unknown_logged_once_and_server_keeps_serving(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash(request: StringValue, call: Call) -> StringValue:
        raise RuntimeError("boom")

    async def scenario() -> tuple[RpcError, str]:
        async with serving(sock_path, echo_service(Crash=crash)):
            client = await TtrpcClient.connect(sock_path)
            with pytest.raises(RpcError) as err:
                await client.call(SVC, "Crash", StringValue(), StringValue)
            after = await client.call(SVC, "Echo", StringValue(value="still here"), StringValue)
            await client.close()
        return err.value, after.value

    with caplog.at_level(logging.INFO):
        err, after = run(scenario())
    assert (err.code, err.message) == (Code.UNKNOWN, "RuntimeError: boom")
    assert after == "still here"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None


def test_undecodable_request_and_payload(sock_path: str) -> None:
    async def scenario() -> list[tuple[int, Any]]:
        async with serving(sock_path):
            reader, writer = await raw_connection(sock_path)
            writer.write(frame(1, b"\xff\xff\xff"))
            writer.write(frame(3, request_bytes(payload=b"\x0a\x05ab")))  # string field cut short
            writer.write(frame(5, request_bytes()))
            answers = [await read_response(reader) for _ in range(3)]
            writer.close()
            return sorted(answers, key=lambda a: a[0])

    (_, bad_request), (_, bad_payload), (_, good) = run(scenario())
    assert bad_request.status.code == Code.INVALID_ARGUMENT
    assert bad_request.status.message.startswith("unmarshal request error: ")
    assert bad_payload.status.code == Code.INTERNAL
    assert bad_payload.status.message.startswith("ttrpc: error unmarshalling payload: ")
    assert good.status.code == 0


# --- stream ids, frame types, sizes, garbage --------------------------------------------------


def test_even_and_reused_stream_ids_are_rejected_on_their_own_id(sock_path: str) -> None:
    async def scenario() -> list[tuple[int, Any]]:
        async with serving(sock_path):
            reader, writer = await raw_connection(sock_path)
            answers = []
            for stream_id in (2, 5, 5, 3, 7):
                writer.write(frame(stream_id, request_bytes()))
                answers.append(await read_response(reader))
            writer.close()
            return answers

    answers = run(scenario())
    assert [sid for sid, _ in answers] == [2, 5, 5, 3, 7]
    codes = [(r.status.code, r.status.message) for _, r in answers]
    assert codes[0] == (Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams")
    assert codes[1][0] == 0
    assert codes[2] == (Code.INVALID_ARGUMENT, "StreamID cannot be re-used and must increment")
    assert codes[3] == (Code.INVALID_ARGUMENT, "StreamID cannot be re-used and must increment")
    assert codes[4][0] == 0


def test_data_and_unknown_frame_types_are_ignored(sock_path: str) -> None:
    async def scenario() -> tuple[int, Any]:
        async with serving(sock_path):
            reader, writer = await raw_connection(sock_path)
            writer.write(frame(1, b"xyz", msg_type=3, flags=1))
            writer.write(frame(1, b"", msg_type=9))
            writer.write(frame(1, request_bytes(), msg_type=2))
            writer.write(frame(1, request_bytes()))
            answer = await read_response(reader)
            writer.close()
            return answer

    stream_id, response = run(scenario())
    assert stream_id == 1 and response.status.code == 0


def test_oversize_frame_is_refused_and_the_connection_still_serves(sock_path: str) -> None:
    length = MAX_DATA + 1000

    async def scenario() -> list[tuple[int, Any]]:
        async with serving(sock_path):
            reader, writer = await raw_connection(sock_path)
            writer.write(struct.pack(">IIBB", length, 1, 1, 0))
            chunk = b"\0" * 65536
            sent = 0
            while sent < length:
                writer.write(chunk[: length - sent])
                sent += min(len(chunk), length - sent)
                await writer.drain()
            writer.write(frame(3, request_bytes()))
            answers = [await read_response(reader) for _ in range(2)]
            writer.close()
            return answers

    (first_id, refused), (second_id, served) = run(scenario())
    assert first_id == 1 and refused.status.code == Code.RESOURCE_EXHAUSTED
    assert refused.status.message == f"message length {length} exceed maximum message size of 4194304"
    assert second_id == 3 and served.status.code == 0


def test_huge_length_header_closes_only_that_connection(sock_path: str) -> None:
    async def scenario() -> tuple[Any, bytes, str]:
        async with serving(sock_path) as server:
            other = await TtrpcClient.connect(sock_path)
            reader, writer = await raw_connection(sock_path)
            writer.write(struct.pack(">IIBB", 0xFFFFFFF0, 9, 1, 0) + b"junk" * 100)
            _, refused = await read_response(reader)
            rest = await read_to_end(reader)  # the server hung up on this connection only
            writer.close()
            reply = await other.call(SVC, "Echo", StringValue(value="other"), StringValue)
            await other.close()
            assert server.connection_count <= 1
        return refused, rest, reply.value

    refused, rest, other_reply = run(scenario())
    assert refused.status.code == Code.RESOURCE_EXHAUSTED
    assert rest == b""
    assert other_reply == "other"


def test_garbage_bytes_then_a_new_connection_still_works(sock_path: str) -> None:
    async def scenario() -> str:
        async with serving(sock_path):
            _, writer = await raw_connection(sock_path)
            writer.write(os.urandom(4096))
            writer.close()
            client = await TtrpcClient.connect(sock_path)
            reply = await client.call(SVC, "Echo", StringValue(value="fine"), StringValue)
            await client.close()
            return reply.value

    assert run(scenario()) == "fine"


# --- peer credentials -------------------------------------------------------------------------


def test_peer_with_another_uid_is_disconnected(
    sock_path: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with monkeypatch.context() as m:
        m.setattr(os, "getuid", lambda: 4242)  # the server believes it runs as uid 4242
        server = TtrpcServer([echo_service()])

    async def scenario() -> Exception:
        await server.start(bound_socket(sock_path))
        client = await TtrpcClient.connect(sock_path)
        with pytest.raises(Unavailable) as err:
            await client.call(SVC, "Echo", StringValue(), StringValue)
        await client.close()
        await server.close()
        return err.value

    with caplog.at_level(logging.WARNING):
        run(scenario())
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"pid {os.getpid()}" in warning and f"uid {os.getuid()}" in warning


def test_peer_uid_is_not_checked_when_not_required(sock_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(os, "getuid", lambda: 4242)
        server = TtrpcServer([echo_service()], require_same_uid=False)

    async def scenario() -> str:
        await server.start(bound_socket(sock_path))
        client = await TtrpcClient.connect(sock_path)
        reply = await client.call(SVC, "Echo", StringValue(value="ok"), StringValue)
        await client.close()
        await server.close()
        return reply.value

    assert run(scenario()) == "ok"


# --- client -----------------------------------------------------------------------------------


def test_client_refuses_to_send_over_4_mib_and_stays_usable(sock_path: str) -> None:
    async def scenario() -> str:
        async with serving(sock_path):
            client = await TtrpcClient.connect(sock_path)
            with pytest.raises(ResourceExhausted, match="exceed maximum message size of 4194304"):
                await client.call(SVC, "Echo", StringValue(value="x" * MAX_DATA), StringValue)
            reply = await client.call(SVC, "Echo", StringValue(value="small"), StringValue)
            await client.close()
            return reply.value

    assert run(scenario()) == "small"


def test_client_fails_pending_calls_with_unavailable_when_server_goes_away(sock_path: str) -> None:
    async def hang(request: StringValue, call: Call) -> StringValue:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def scenario() -> None:
        server = TtrpcServer([service(Hang=hang)])
        await server.start(bound_socket(sock_path))
        client = await TtrpcClient.connect(sock_path)
        pending = asyncio.create_task(client.call(SVC, "Hang", StringValue(), StringValue))
        await asyncio.sleep(0.05)
        await server.close()
        with pytest.raises(Unavailable):
            await pending
        assert client.closed
        with pytest.raises(Unavailable):
            await client.call(SVC, "Hang", StringValue(), StringValue)
        await client.close()

    run(scenario())


def test_client_connect_to_missing_socket_is_unavailable(sock_path: str) -> None:
    async def scenario() -> None:
        with pytest.raises(Unavailable, match="connect"):
            await TtrpcClient.connect(sock_path)

    run(scenario())


def test_client_timeout_is_deadline_exceeded_and_late_answer_is_dropped(sock_path: str) -> None:
    gate = asyncio.Event()

    async def slow(request: StringValue, call: Call) -> StringValue:
        await gate.wait()
        return StringValue(value="late")

    async def scenario() -> str:
        async with serving(sock_path, echo_service(Slow=slow)):
            client = await TtrpcClient.connect(sock_path)
            with pytest.raises(DeadlineExceeded):
                await client.call(SVC, "Slow", StringValue(), StringValue, timeout=0.05)
            gate.set()
            await asyncio.sleep(0.02)
            reply = await client.call(SVC, "Echo", StringValue(value="next"), StringValue)
            await client.close()
            return reply.value

    assert run(scenario()) == "next"


def test_empty_response_type_round_trip(sock_path: str) -> None:
    async def nothing(request: empty_pb2.Empty, call: Call) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    svc = Service(SVC, {"Nothing": Method("Nothing", empty_pb2.Empty, empty_pb2.Empty, nothing)})

    async def scenario() -> empty_pb2.Empty:
        async with serving(sock_path, svc):
            client = await TtrpcClient.connect(sock_path)
            reply = await client.call(SVC, "Nothing", empty_pb2.Empty(), empty_pb2.Empty)
            await client.close()
            return reply

    assert run(scenario()) == empty_pb2.Empty()


def test_closing_the_server_leaves_the_socket_file_to_its_owner(sock_path: str) -> None:
    # Python 3.13's asyncio would unlink it at close(); the supervisor's SocketFile removes it, and only
    # while it is still this server's file (CI's VM runs 3.13).
    async def scenario() -> None:
        async with serving(sock_path):
            pass

    run(scenario())
    assert os.path.exists(sock_path)


# --- fuzz -------------------------------------------------------------------------------------

VALID_FRAME = frame(1, request_bytes())


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "mutated", "truncated", "mixed"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "truncated":
        return VALID_FRAME[: draw(st.integers(0, len(VALID_FRAME) - 1))]
    data = bytearray(VALID_FRAME * draw(st.integers(1, 3)))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if kind == "mixed":
        data += draw(st.binary(max_size=64)) + frame(draw(st.integers(0, 2**32 - 1)), request_bytes())
    return bytes(data)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=hostile_bytes())
def test_hostile_bytes_never_break_the_server(sock_path: str, junk: bytes) -> None:
    async def scenario() -> str:
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        async with serving(sock_path):
            reader, writer = await raw_connection(sock_path)
            writer.write(junk)
            writer.write_eof()
            # Whatever comes back must be well-formed Response frames, then end of stream.
            received = await asyncio.wait_for(read_to_end(reader), 5)
            while received:
                length, _sid, msg_type, _flags = struct.unpack(">IIBB", received[:10])
                assert msg_type == 2 and length <= MAX_DATA
                ttrpc_pb2.Response.FromString(received[10 : 10 + length])
                received = received[10 + length :]
            writer.close()
            client = await TtrpcClient.connect(sock_path)
            reply = await client.call(SVC, "Echo", StringValue(value="alive"), StringValue)
            await client.close()
            return reply.value

    assert run(scenario()) == "alive"


def test_close_with_grace_lets_a_running_call_answer(sock_path: str) -> None:
    async def slow(request: StringValue, call: Call) -> StringValue:
        await asyncio.sleep(0.1)
        return StringValue(value="done")

    async def scenario() -> str:
        server = TtrpcServer([service(Slow=slow)])
        await server.start(bound_socket(sock_path))
        client = await TtrpcClient.connect(sock_path)
        pending = asyncio.create_task(client.call(SVC, "Slow", StringValue(), StringValue))
        await asyncio.sleep(0.02)
        await server.close(grace=2)
        assert server.connection_count == 0
        reply = await pending
        await client.close()
        return reply.value

    assert run(scenario()) == "done"


def test_serve_returns_when_closed(sock_path: str) -> None:
    async def scenario() -> None:
        server = TtrpcServer([echo_service()])
        serving_task = asyncio.create_task(server.serve(bound_socket(sock_path)))
        await asyncio.sleep(0.01)
        client = await TtrpcClient.connect(sock_path)
        assert (await client.call(SVC, "Echo", StringValue(value="x"), StringValue)).value == "x"
        await server.close()
        await asyncio.wait_for(serving_task, 1)
        await client.close()

    run(scenario())
