"""Serves `rpc.Service` tables over gRPC (grpcio's asyncio server) on a unix socket.

The gRPC twin of ttrpc_server.py: the same Service objects, exposed through generic handlers (no
generated servicer), errors mapped once by `errors.status_of`. containerd 2.x uses it when `start`
answered the JSON bootstrap with `"protocol":"grpc"` (bootstrap.py); it then calls
`/containerd.task.v3.Task/<Method>`. grpcio is imported only by a supervisor that serves gRPC.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import grpc
from grpc import aio

from wasmvisor.errors import Code, ShimError, status_of
from wasmvisor.supervisor.rpc.service import Call, Method, Service

logger = logging.getLogger(__name__)

_STATUS = {Code(status.value[0]): status for status in grpc.StatusCode}


class GrpcServer:
    """A grpc.aio server for the given services, listening on one unix socket path."""

    def __init__(self, services: Iterable[Service]) -> None:
        self.services = list(services)
        self._server = aio.server()
        self._server.add_generic_rpc_handlers([_generic_handler(s) for s in self.services])

    async def start(self, path: str) -> None:
        """Bind `path` (mode 0600: only containerd, as root, may call) and start serving."""
        umask = os.umask(0o177)
        try:
            self._server.add_insecure_port("unix:" + path)
        finally:
            os.umask(umask)
        os.chmod(path, 0o600)
        await self._server.start()

    async def close(self, grace: float | None = None) -> None:
        await self._server.stop(grace)


def _generic_handler(service: Service) -> grpc.GenericRpcHandler:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _unary(service.name, method),
            request_deserializer=method.request_type.FromString,
            response_serializer=_serialize,
        )
        for name, method in service.methods.items()
    }
    return grpc.method_handlers_generic_handler(service.name, handlers)


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


def _unary(service: str, method: Method) -> Any:
    async def handle(request: Any, context: aio.ServicerContext) -> Any:
        metadata: dict[str, str] = {}
        for key, value in context.invocation_metadata() or ():
            if isinstance(value, str):
                metadata.setdefault(key.lower(), value)
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        call = Call(service=service, method=method.name, metadata=metadata, deadline=deadline)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("grpc: %s/%s", service, method.name)
        try:
            return await method.handler(request, call)
        except ShimError as e:
            code, text = status_of(e)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("grpc: %s/%s -> %s: %s", service, method.name, code.name, text)
        except Exception as e:
            logger.exception("grpc: %s/%s failed", service, method.name)
            code, text = status_of(e)
        await context.abort(_STATUS[code], text)

    return handle
