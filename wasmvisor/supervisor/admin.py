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
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.empty_pb2 import Empty
from google.protobuf.wrappers_pb2 import StringValue

from wasmvisor.errors import DeadlineExceeded
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
    that does not know the call (not a supervisor, or an older one)."""
    client: TtrpcClient | None = None
    try:
        async with asyncio.timeout(timeout):
            client = await TtrpcClient.connect(path)
            answer = await client.call(SERVICE, METHOD, Empty(), StringValue)
    except TimeoutError:
        raise DeadlineExceeded(f"{path}: no answer within {timeout:g} s") from None
    finally:
        if client is not None:
            await client.close()
    found: dict[str, Any] = json.loads(answer.value)
    return found
