"""The ttrpc client: unary calls over one unix-socket connection, many in flight at once.

Stream ids go 1, 3, 5, ...; a reader task hands each Response to the call waiting on its stream id.
A status other than OK raises `errors.RpcError`; a lost connection fails every waiting call with
`errors.Unavailable`, and the client stays closed (make a new one to reconnect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TypeVar

from google.protobuf.message import Message

from wasmvisor.errors import DeadlineExceeded, Internal, ResourceExhausted, RpcError, Unavailable
from wasmvisor.proto import ttrpc_pb2
from wasmvisor.supervisor.rpc.ttrpc import (
    MAX_DATA,
    MSG_REQUEST,
    MSG_RESPONSE,
    OversizeFrame,
    encode_frame,
    oversize_message,
    read_frame,
)

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

_READ_LIMIT = 1 << 20


class TtrpcClient:
    """A connection to a ttrpc server. Make one with `await TtrpcClient.connect(path)`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> None:
        self._reader = reader
        self._writer = writer
        self._path = path
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._wlock = asyncio.Lock()
        self._closed_reason: str | None = None
        self._reader_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, path: str) -> TtrpcClient:
        """Connect to the unix socket `path` ("unix://" prefix allowed). Unavailable if nobody listens."""
        if path.startswith("unix://"):
            path = path[len("unix://") :]
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=_READ_LIMIT)
        except OSError as e:
            raise Unavailable(f"ttrpc: connect {path}: {e.strerror or e}") from e
        return cls(reader, writer, path)

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    async def call(
        self,
        service: str,
        method: str,
        request: Message,
        response_type: type[M],
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> M:
        """One unary call. Raises RpcError (status from the server), Unavailable (connection gone),
        DeadlineExceeded (no answer within `timeout` s), ResourceExhausted (request over 4 MiB)."""
        envelope = ttrpc_pb2.Request(service=service, method=method, payload=request.SerializeToString())  # type: ignore[attr-defined]
        if timeout is not None:
            envelope.timeout_nano = max(1, int(timeout * 1e9))
        if metadata:
            for key, value in metadata.items():
                envelope.metadata.add(key=key, value=value)
        data = envelope.SerializeToString()
        if len(data) > MAX_DATA:
            raise ResourceExhausted(oversize_message(len(data)))
        if self._closed_reason is not None:
            raise Unavailable(f"ttrpc: {self._closed_reason}")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        stream_id = 0
        try:
            async with asyncio.timeout(timeout):
                async with self._wlock:
                    if self._closed_reason is not None:
                        raise Unavailable(f"ttrpc: {self._closed_reason}")
                    # Ids are taken and written under the lock, so they reach the server in order.
                    stream_id = self._next_id
                    self._next_id += 2
                    self._pending[stream_id] = future
                    try:
                        self._writer.write(encode_frame(stream_id, MSG_REQUEST, data))
                        await self._writer.drain()
                    except ConnectionError as e:
                        raise Unavailable(f"ttrpc: send {service}/{method}: {e}") from e
                answer = await future
        except TimeoutError:
            raise DeadlineExceeded(f"ttrpc: {service}/{method}: no answer within {timeout} s") from None
        finally:
            self._pending.pop(stream_id, None)
        try:
            response = ttrpc_pb2.Response.FromString(answer)  # type: ignore[attr-defined]
        except Exception as e:
            raise Internal(f"ttrpc: error unmarshalling response: {e}") from e
        if response.status.code:
            raise RpcError(response.status.code, response.status.message)
        try:
            return response_type.FromString(response.payload)
        except Exception as e:
            raise Internal(f"ttrpc: error unmarshalling payload: {e}") from e

    async def close(self) -> None:
        """Close the connection; calls still waiting fail with Unavailable."""
        self._shut("client closed")
        if self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
            try:
                await self._reader_task
            except asyncio.CancelledError:
                pass
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    def _shut(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
        self._writer.close()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(Unavailable(f"ttrpc: {reason}"))

    async def _read_loop(self) -> None:
        reason = "connection closed"
        try:
            while True:
                try:
                    stream_id, msg_type, data = await read_frame(self._reader)
                except OversizeFrame as e:
                    future = self._pending.pop(e.stream_id, None)
                    if future is not None and not future.done():
                        future.set_exception(ResourceExhausted(str(e)))
                    if e.discarded:
                        continue
                    reason = f"connection to {self._path} out of sync (frame length {e.length})"
                    return
                if msg_type != MSG_RESPONSE:
                    continue
                future = self._pending.pop(stream_id, None)
                if future is None or future.done():
                    # A call that timed out or was cancelled; its late answer is dropped.
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug("ttrpc: dropping response for stream %d", stream_id)
                    continue
                future.set_result(data)
        except asyncio.IncompleteReadError:
            reason = f"connection to {self._path} closed"
        except (ConnectionError, OSError) as e:
            reason = f"connection to {self._path} lost: {e}"
        finally:
            self._shut(reason)
