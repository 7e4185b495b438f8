"""The admin service: `wasmvisor ps` asks a supervisor what it runs, over the supervisor's own socket.

One unary call, `wasmvisor.v1.Admin/Tasks`: the request is `google.protobuf.Empty`, the answer a
`google.protobuf.StringValue` holding JSON (tasks/describe.py makes it): the shape is ours, read by our
own command alone, and JSON keeps it readable with nothing generated. It sits beside the Task API on the
same server, so the same rules hold: the socket is 0600 and only peers of the supervisor's uid are served.

Both halves live here: `service` (the supervisor's) and `ask` (the command's), which gives up after a
short deadline so that a hung supervisor (stopped, or its loop blocked) is reported, never waited for.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.empty_pb2 import Empty
from google.protobuf.wrappers_pb2 import StringValue

from wasmvisor.errors import DeadlineExceeded, RpcError, Unavailable
from wasmvisor.supervisor.rpc.service import Call, Method, Service
from wasmvisor.supervisor.rpc.ttrpc_client import TtrpcClient

SERVICE = "wasmvisor.v1.Admin"
METHOD = "Tasks"
TIMEOUT = 1.0
"""Seconds `ask` waits by default (a supervisor answers in about a millisecond)."""


def service(describe: Callable[[], Awaitable[dict[str, Any]]]) -> Service:
    """The Admin service of one supervisor: Tasks answers `describe()` as JSON."""

    async def tasks(req: Empty, call: Call) -> StringValue:
        return StringValue(value=json.dumps(await describe()))

    return Service(SERVICE, {METHOD: Method(METHOD, Empty, StringValue, tasks)})


async def ask(path: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """What the supervisor listening on `path` runs. Raises DeadlineExceeded when it does not answer
    within `timeout` s (connecting included), Unavailable when nothing listens, RpcError for a server
    that does not know the call (not a supervisor, or an older one). A supervisor that serves gRPC
    (`-protocol grpc`) closes a ttrpc connection at once: it is asked again over gRPC."""
    give_up = time.monotonic() + timeout
    client: TtrpcClient | None = None
    try:
        async with asyncio.timeout(timeout):
            client = await TtrpcClient.connect(path)
            answer = await client.call(SERVICE, METHOD, Empty(), StringValue)
    except TimeoutError:
        raise DeadlineExceeded(f"{path}: no answer within {timeout:g} s") from None
    except Unavailable:
        if client is None:
            raise  # nothing listens
        answer = await asyncio.to_thread(_ask_grpc, path, max(0.01, give_up - time.monotonic()), timeout)
    finally:
        if client is not None:
            await client.close()
    found: dict[str, Any] = json.loads(answer.value)
    return found


def _ask_grpc(path: str, left: float, timeout: float) -> StringValue:
    import grpc  # ~60 ms of imports: only for a supervisor that speaks gRPC

    with grpc.insecure_channel("unix:" + path) as channel:
        call = channel.unary_unary(f"/{SERVICE}/{METHOD}", request_serializer=Empty.SerializeToString,
                                   response_deserializer=StringValue.FromString)
        try:
            answer: StringValue = call(Empty(), timeout=left)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded(f"{path}: no answer within {timeout:g} s") from None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise RpcError(code.value[0], f"grpc: {details}") from None
    return answer
