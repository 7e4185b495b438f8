"""The group claim: `start` asks a running supervisor to stay for one more task, over its own socket;
`delete` tells it that containerd gave that task up.

Two unary calls of `wasmvisor.v1.Group`, whose request is a `google.protobuf.StringValue` holding the
task id and whose answer is `google.protobuf.Empty`. `Claim`: OK means the supervisor stays for that
task (lifetime.py); FAILED_PRECONDITION means it is ending and has removed its socket file already, so
`start` binds the address afresh. `Release`: containerd ran `delete` for the task, so it holds nothing
of it any more and will send no Create or Shutdown for it; the claim is settled as by a Shutdown, and a
supervisor left idle lingers, then ends. The service sits beside the Task API on the same ttrpc (or
gRPC) server; the transport knows nothing of it.

Both halves live here. The client half runs on `start`'s fast path, which loads only `os` and
`_socket`: the ttrpc frame (protocol reference, section 2) is encoded and decoded by hand (wire.py), a
few dozen bytes each way. The server half (`service`) imports protobuf and the rpc interface when the
supervisor builds it.
"""

from __future__ import annotations

import _socket
import time

from wasmvisor.supervisor.shim import wire

TYPE_CHECKING = False  # `start` imports this module: no typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from wasmvisor.supervisor.rpc.service import Service

SERVICE = "wasmvisor.v1.Group"
METHOD = "Claim"
RELEASE = "Release"
TIMEOUT = 2.0
"""Seconds `start` waits for the answer (a supervisor answers in well under a millisecond)."""

GRANTED = "granted"
"""The supervisor stays for the task."""
REFUSED = "refused"
"""The supervisor is ending; its socket file is gone already."""
ABSENT = "absent"
"""Nothing listens on the path (no file, or a stale file that refuses connections)."""
SILENT = "silent"
"""Something listens but did not answer in time (a full backlog, a busy loop)."""
OTHER = "other"
"""A ttrpc server answered with another status: it serves but does not know claims (an older wasmvisor)."""
GARBLED = "garbled"
"""The connection closed without an answer, or the answer was not a ttrpc Response."""

STATUS_OK = 0
STATUS_FAILED_PRECONDITION = 9
_HEADER = 10
_MSG_REQUEST = 1
_MSG_RESPONSE = 2
_STREAM_ID = 1
_MAX_ANSWER = 1 << 16


def encode_request(task_id: str, timeout: float = TIMEOUT, method: str = METHOD) -> bytes:
    """One ttrpc Request frame: `method`(StringValue{value: task_id}) on stream 1."""
    payload = wire.field(1, task_id.encode())
    request = (wire.field(1, SERVICE.encode()) + wire.field(2, method.encode()) + wire.field(3, payload)
               + wire.varint_field(4, int(timeout * 1e9)))  # timeout_nano
    return len(request).to_bytes(4, "big") + _STREAM_ID.to_bytes(4, "big") + bytes((_MSG_REQUEST, 0)) + request


def decode_response(frame: bytes) -> int:
    """The status code of one whole ttrpc Response frame to our request; ValueError if it is none."""
    if len(frame) < _HEADER:
        raise ValueError("short frame")
    size, stream, kind = int.from_bytes(frame[:4], "big"), int.from_bytes(frame[4:8], "big"), frame[8]
    if kind != _MSG_RESPONSE or stream != _STREAM_ID or size != len(frame) - _HEADER:
        raise ValueError("not the response to the claim")
    status = wire.last_fields(frame[_HEADER:]).get(1, b"")
    if not isinstance(status, bytes):
        raise ValueError("status is not a message")
    code = wire.last_fields(status).get(1, STATUS_OK)
    if not isinstance(code, int):
        raise ValueError("status code is not a number")
    return code


def _receive(sock: _socket.socket, size: int, give_up: float) -> bytes:
    data = b""
    while len(data) < size:
        left = give_up - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("closed without an answer")
        data += chunk
    return data


def _connect(path: str, timeout: float) -> _socket.socket | str:
    """A connection to `path`, or why there is none: SILENT or ABSENT."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (TimeoutError, BlockingIOError):
        sock.close()
        return SILENT  # listening, with a full backlog (EAGAIN: a unix socket does not wait)
    except OSError:
        sock.close()
        return ABSENT
    return sock


def ask(path: str, task_id: str, timeout: float = TIMEOUT, method: str = METHOD) -> str:
    """Claim the supervisor listening on the unix socket `path` for `task_id` over ttrpc (or call
    another `method` of the Group service for it): one of GRANTED, REFUSED, ABSENT, SILENT, OTHER,
    GARBLED."""
    give_up = time.monotonic() + timeout
    sock = _connect(path, timeout)
    if isinstance(sock, str):
        return sock
    try:
        sock.sendall(encode_request(task_id, timeout, method))
        head = _receive(sock, _HEADER, give_up)
        size = int.from_bytes(head[:4], "big")
        if size > _MAX_ANSWER:
            return GARBLED
        code = decode_response(head + _receive(sock, size, give_up))
    except TimeoutError:
        return SILENT
    except (OSError, ValueError):
        return GARBLED
    finally:
        sock.close()
    if code == STATUS_OK:
        return GRANTED
    return REFUSED if code == STATUS_FAILED_PRECONDITION else OTHER


def ask_grpc(path: str, task_id: str, timeout: float = TIMEOUT, method: str = METHOD) -> str:
    """`ask` for a supervisor that serves gRPC (grpcio: ~60 ms of imports, when something listens)."""
    probe = _connect(path, timeout)
    if isinstance(probe, str):
        return probe
    probe.close()
    from wasmvisor.supervisor.shim.entry_script import load_site

    load_site()  # grpcio lives in site-packages, which `start`'s `python -S` left out
    import grpc

    with grpc.insecure_channel("unix:" + path) as channel:
        try:
            channel.unary_unary(f"/{SERVICE}/{method}")(wire.field(1, task_id.encode()), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                return REFUSED
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return SILENT
            # UNAVAILABLE also comes from a server of another protocol: `start` looks again itself.
            return GARBLED if code in (grpc.StatusCode.UNAVAILABLE, None) else OTHER
    return GRANTED


def service(claim: Callable[[str], bool], release: Callable[[str], object], name: str) -> Service:
    """The Group service of the supervisor `name` (`NS/GROUP`): Claim asks `claim(task_id)`, Release
    tells `release(task_id)`."""
    from google.protobuf.empty_pb2 import Empty
    from google.protobuf.wrappers_pb2 import StringValue

    from wasmvisor.errors import FailedPrecondition, InvalidArgument
    from wasmvisor.supervisor.rpc.service import Call, Method, Service

    async def handle(req: StringValue, call: Call) -> Empty:
        if not req.value:
            raise InvalidArgument("claim: task id is empty")
        if not claim(req.value):
            raise FailedPrecondition(f"claim {req.value}: the supervisor of {name} is ending")
        return Empty()

    async def handle_release(req: StringValue, call: Call) -> Empty:
        if not req.value:
            raise InvalidArgument("release: task id is empty")
        release(req.value)
        return Empty()

    return Service(SERVICE, {METHOD: Method(METHOD, StringValue, Empty, handle),
                             RELEASE: Method(RELEASE, StringValue, Empty, handle_release)})
