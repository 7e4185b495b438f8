"""The ttrpc server: serves `rpc.Service`s on a listening unix socket, many calls at once.

One reader task per connection reads frames; each Request runs in its own task, so a `Wait` that
blocks never holds up `Kill` or `State` on the same connection. Responses go out as whole frames
under one writer lock per connection. A failing handler, a malformed frame or a peer that sends
garbage costs at most that call or that connection, never the server.

Deadlines: `timeout_nano` becomes `Call.deadline` for handlers that want it, but the server does not
cancel handlers when it passes. Cancelling a coroutine half way (a Create that has mounted the rootfs
but not registered the task) would leave state behind; the Go shims ignore the deadline as well.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Iterable
from typing import Any

from wasmvisor.errors import Code, ShimError, status_of
from wasmvisor.proto import ttrpc_pb2
from wasmvisor.supervisor.rpc.service import Call, Service
from wasmvisor.supervisor.rpc.ttrpc import (
    MAX_DATA,
    MSG_REQUEST,
    OversizeFrame,
    encode_ok_response,
    encode_status_response,
    oversize_message,
    read_frame,
    resource_exhausted_response,
)

logger = logging.getLogger(__name__)

_UCRED = struct.Struct("3i")
_READ_LIMIT = 1 << 20
# Python 3.13's asyncio unlinks a unix server's socket file when the server closes, if a file of the same
# inode number is still there; that is not proof it is still ours (ext4 reuses a freed inode number at
# once), and the file's owner decides when it goes: rpc.socket_file.SocketFile. As 3.11 and 3.12 do.
_KEEP_SOCKET_FILE: dict[str, Any] = {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}
# Bytes a success Response adds around its payload (header, status, field key, length varint).
_RESPONSE_OVERHEAD = 10 + 3 + 5


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a unix socket (SO_PEERCRED)."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid, gid


class TtrpcServer:
    """Serves unary ttrpc calls for the registered services."""

    def __init__(self, services: Iterable[Service] = (), *, require_same_uid: bool = True) -> None:
        self._services: dict[str, Service] = {}
        for service in services:
            self.add_service(service)
        self._require_same_uid = require_same_uid
        self._uid = os.getuid()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._stopped = asyncio.Event()

    def add_service(self, service: Service) -> None:
        if service.name in self._services:
            raise ValueError(f"service {service.name} is already registered")
        self._services[service.name] = service

    @property
    def connection_count(self) -> int:
        """Connections currently open (accepted and not yet closed)."""
        return len(self._connections)

    async def start(self, sock: socket.socket) -> None:
        """Begin accepting on `sock` (a bound unix socket, listening or not) and return."""
        if self._server is not None:
            raise RuntimeError("ttrpc server already started")
        self._server = await asyncio.start_unix_server(self._accept, sock=sock, limit=_READ_LIMIT,
                                                       **_KEEP_SOCKET_FILE)

    async def serve(self, sock: socket.socket) -> None:
        """Accept on `sock` until close() is called."""
        await self.start(sock)
        await self._stopped.wait()

    async def close(self, grace: float = 0.0) -> None:
        """Stop accepting, give running calls up to `grace` seconds, then cancel them and close every
        connection. A handler calling close() is not cancelled, but its own answer may not get out:
        a Shutdown handler should rather wake the code that calls close()."""
        self._stopped.set()
        if self._server is not None:
            self._server.close()
        me = asyncio.current_task()
        if grace > 0:
            running = [t for c in self._connections for t in c.requests if t is not me]
            if running:
                await asyncio.wait(running, timeout=grace)
        tasks: list[asyncio.Task[None]] = []
        for conn in list(self._connections):
            tasks.extend(conn.abort(me))
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            pid, uid, gid = peer_credentials(sock)
        except (OSError, AttributeError, struct.error) as e:
            if self._require_same_uid:
                logger.warning("ttrpc: closing connection: cannot read peer credentials: %s", e)
                writer.close()
                return
            pid = uid = gid = -1
        if self._require_same_uid and uid != self._uid:
            logger.warning(
                "ttrpc: closing connection from pid %d: uid %d (gid %d) is not ours (%d)",
                pid,
                uid,
                gid,
                self._uid,
            )
            writer.close()
            return
        if self._stopped.is_set():
            writer.close()
            return
        conn = _Connection(self._services, reader, writer, f"pid={pid} uid={uid}")
        self._connections.add(conn)
        try:
            await conn.run()
        except asyncio.CancelledError:
            # close() cancelled us. Not re-raised: on 3.11 asyncio's done-callback for this task
            # calls task.exception(), which raises for a cancelled task and logs a spurious error.
            pass
        except Exception:
            logger.exception("ttrpc: connection from %s failed", conn.peer)
        finally:
            self._connections.discard(conn)


class _Connection:
    """One accepted connection: a reader loop plus one task per request in flight."""

    def __init__(
        self,
        services: dict[str, Service],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> None:
        self.services = services
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.requests: set[asyncio.Task[None]] = set()
        self.reader_task: asyncio.Task[None] | None = None
        self._wlock = asyncio.Lock()

    async def run(self) -> None:
        self.reader_task = asyncio.current_task()  # type: ignore[assignment]
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("ttrpc: connection from %s", self.peer)
        try:
            await self._read_loop()
            # End of stream: the peer may have only half-closed, so let calls in flight answer.
            if self.requests:
                await asyncio.gather(*self.requests, return_exceptions=True)
        finally:
            self.writer.close()
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("ttrpc: connection from %s closed", self.peer)

    def abort(self, keep: asyncio.Task[object] | None) -> list[asyncio.Task[None]]:
        """Cancel the reader and every call except `keep`; close the socket. Returns the tasks."""
        cancelled: list[asyncio.Task[None]] = []
        for task in (self.reader_task, *self.requests):
            if task is not None and task is not keep and not task.done():
                task.cancel()
                cancelled.append(task)
        self.writer.close()
        return cancelled

    async def _read_loop(self) -> None:
        last_id = 0
        debug = logger.isEnabledFor(logging.DEBUG)
        while True:
            try:
                stream_id, msg_type, data = await read_frame(self.reader)
            except OversizeFrame as e:
                await self._send(resource_exhausted_response(e.stream_id, e.length))
                if e.discarded:
                    continue
                logger.warning(
                    "ttrpc: closing connection from %s: frame header with length %d, stream out of sync",
                    self.peer,
                    e.length,
                )
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if msg_type != MSG_REQUEST:
                # Data frames (streaming) and unknown types are ignored, as ttrpc specifies.
                if debug:
                    logger.debug("ttrpc: ignoring frame type %d on stream %d", msg_type, stream_id)
                continue
            if not stream_id & 1:
                await self._send_status(
                    stream_id, Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams"
                )
                continue
            if stream_id <= last_id:
                await self._send_status(
                    stream_id, Code.INVALID_ARGUMENT, "StreamID cannot be re-used and must increment"
                )
                continue
            last_id = stream_id
            task = asyncio.create_task(self._handle(stream_id, data))
            self.requests.add(task)
            task.add_done_callback(self.requests.discard)

    async def _handle(self, stream_id: int, data: bytes) -> None:
        try:
            request = ttrpc_pb2.Request.FromString(data)  # type: ignore[attr-defined]
        except Exception as e:  # DecodeError, or worse for hostile input
            await self._send_status(stream_id, Code.INVALID_ARGUMENT, f"unmarshal request error: {e}")
            return
        service = self.services.get(request.service)
        if service is None:
            await self._send_status(stream_id, Code.UNIMPLEMENTED, f"service {request.service}")
            return
        method = service.methods.get(request.method)
        if method is None:
            await self._send_status(stream_id, Code.UNIMPLEMENTED, f"method {request.method}")
            return
        try:
            message = method.request_type.FromString(request.payload)
        except Exception as e:
            await self._send_status(stream_id, Code.INTERNAL, f"ttrpc: error unmarshalling payload: {e}")
            return
        metadata: dict[str, str] = {}
        for kv in request.metadata:
            metadata.setdefault(kv.key.lower(), kv.value)
        deadline = time.monotonic() + request.timeout_nano / 1e9 if request.timeout_nano > 0 else None
        call = Call(service=request.service, method=request.method, metadata=metadata, deadline=deadline)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("ttrpc: %s/%s stream %d", request.service, request.method, stream_id)
        try:
            result = await method.handler(message, call)
            payload = result.SerializeToString()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the server is closing
            await self._send_status(stream_id, Code.CANCELLED, "handler cancelled")
            return
        except ShimError as e:
            code, text = status_of(e)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("ttrpc: %s/%s -> %s: %s", request.service, request.method, code.name, text)
            await self._send_status(stream_id, code, text)
            return
        except Exception as e:
            logger.exception("ttrpc: %s/%s failed", request.service, request.method)
            code, text = status_of(e)
            await self._send_status(stream_id, code, text)
            return
        if len(payload) + _RESPONSE_OVERHEAD > MAX_DATA:
            logger.error(
                "ttrpc: %s/%s response of %d bytes is too large", request.service, request.method, len(payload)
            )
            await self._send_status(stream_id, Code.RESOURCE_EXHAUSTED, oversize_message(len(payload)))
            return
        await self._send(encode_ok_response(stream_id, payload))

    async def _send_status(self, stream_id: int, code: Code, message: str) -> None:
        await self._send(encode_status_response(stream_id, code, message))

    async def _send(self, frame: bytes) -> None:
        async with self._wlock:
            if self.writer.is_closing():
                return
            try:
                self.writer.write(frame)
                await self.writer.drain()
            except ConnectionError as e:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("ttrpc: cannot answer %s: %s", self.peer, e)
