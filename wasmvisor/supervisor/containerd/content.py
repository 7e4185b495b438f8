"""A client of containerd's own gRPC API (containers, images, content store, leases), as a shim
calls it back (shim protocol reference, section 7): grpc.aio over containerd's unix socket, with
the `containerd-namespace` header on every call and `containerd-lease` on writes.

Importing this module imports grpcio (~60 ms): the supervisor imports it only when a container
may have wasm layers (wasmvisor.supervisor.containerd.wasm_layers decides).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.message import Message

from wasmvisor import errors
from wasmvisor.proto.containerd.services.containers.v1 import containers_pb2
from wasmvisor.proto.containerd.services.content.v1 import content_pb2
from wasmvisor.proto.containerd.services.images.v1 import images_pb2
from wasmvisor.proto.containerd.services.leases.v1 import leases_pb2

log = logging.getLogger(__name__)

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
GC_EXPIRE_LABEL = "containerd.io/gc.expire"
WRITE_CHUNK = 1 << 20
"""Bytes per Write request; containerd's gRPC server takes at most 16 MiB per message."""
MAX_MESSAGE = 16 << 20
JOIN_ON_LOOP = 1 << 20
"""Blobs up to this size are joined on the loop (documents); bigger ones (layers) on a thread."""
CALL_TIMEOUT = 10.0

R = TypeVar("R", bound=Message)


class ContainerdClient:
    """containerd's gRPC API for one namespace. Every method raises a ShimError (NotFound,
    AlreadyExists, RpcError for other statuses) naming the call and the object."""

    def __init__(self, address: str, namespace: str) -> None:
        target = address if "://" in address else f"unix://{os.path.abspath(address)}"
        self.address = address
        self.namespace = namespace
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                     ("grpc.max_send_message_length", MAX_MESSAGE)],
        )

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> ContainerdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _metadata(self, lease: str = "") -> tuple[tuple[str, str], ...]:
        if lease:
            return ((NAMESPACE_HEADER, self.namespace), (LEASE_HEADER, lease))
        return ((NAMESPACE_HEADER, self.namespace),)

    async def _unary(self, method: str, request: Message, response: type[R], what: str, lease: str = "") -> R:
        call = self._channel.unary_unary(
            method, request_serializer=_serialize, response_deserializer=response.FromString
        )
        try:
            result: R = await call(request, metadata=self._metadata(lease), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, what) from None
        return result

    # containers and images

    async def container_image(self, container_id: str) -> str:
        """The image name the container was created from ("" when none)."""
        resp = await self._unary(
            "/containerd.services.containers.v1.Containers/Get",
            containers_pb2.GetContainerRequest(id=container_id),
            containers_pb2.GetContainerResponse,
            f"container {container_id}",
        )
        return resp.container.image

    async def image_target(self, name: str) -> tuple[str, str, int]:
        """The (media type, digest, size) of the image's target (an index or a manifest)."""
        resp = await self._unary(
            "/containerd.services.images.v1.Images/Get",
            images_pb2.GetImageRequest(name=name),
            images_pb2.GetImageResponse,
            f"image {name}",
        )
        target = resp.image.target
        return target.media_type, target.digest, target.size

    # content

    async def info(self, digest: str) -> content_pb2.Info:
        resp = await self._unary(
            "/containerd.services.content.v1.Content/Info",
            content_pb2.InfoRequest(digest=digest),
            content_pb2.InfoResponse,
            f"content {digest}",
        )
        return resp.info

    async def read(self, digest: str, limit: int = 0) -> bytes:
        """The whole blob (server-streaming Read, chunks joined); `limit` > 0 refuses bigger ones."""
        call = self._channel.unary_stream(
            "/containerd.services.content.v1.Content/Read",
            request_serializer=_serialize,
            response_deserializer=content_pb2.ReadContentResponse.FromString,
        )
        chunks: list[bytes] = []
        total = 0
        try:
            stream = call(content_pb2.ReadContentRequest(digest=digest), metadata=self._metadata(),
                          timeout=CALL_TIMEOUT * 6)
            async for part in stream:
                if part.offset != total:
                    raise errors.Internal(f"content {digest}: read got offset {part.offset}, want {total}")
                chunks.append(part.data)
                total += len(part.data)
                if limit and total > limit:
                    stream.cancel()
                    raise errors.ResourceExhausted(f"content {digest}: bigger than {limit} bytes")
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, f"content {digest}") from None
        if total < JOIN_ON_LOOP:
            return b"".join(chunks)
        import asyncio  # loaded already: this client only runs on the supervisor's loop

        return await asyncio.to_thread(b"".join, chunks)  # a copy of up to 512 MiB: off the loop

    async def set_labels(self, digest: str, labels: Mapping[str, str]) -> content_pb2.Info:
        """Set (or, with an empty value, remove) these labels of a blob, leaving its others alone."""
        info = content_pb2.Info(digest=digest, labels={k: v for k, v in labels.items() if v})
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        resp = await self._unary(
            "/containerd.services.content.v1.Content/Update",
            content_pb2.UpdateRequest(info=info, update_mask=mask),
            content_pb2.UpdateResponse,
            f"content {digest}",
        )
        return resp.info

    async def write(self, data: bytes, digest: str, labels: Mapping[str, str], lease: str) -> bool:
        """Store `data` as blob `digest` with `labels` (bidi Write: stat, writes, commit), under
        `lease`. Returns False when the blob was there already (its labels are then untouched)."""
        ref = f"wasmvisor-{digest.partition(':')[2][:16]}-{secrets.token_hex(4)}"
        W = content_pb2.WriteContentRequest
        requests = [W(action=content_pb2.STAT, ref=ref, expected=digest, total=len(data))]
        for offset in range(0, len(data), WRITE_CHUNK):
            requests.append(W(action=content_pb2.WRITE, ref=ref, offset=offset,
                              data=data[offset : offset + WRITE_CHUNK]))
        requests.append(W(action=content_pb2.COMMIT, ref=ref, offset=len(data), total=len(data), expected=digest,
                          labels=dict(labels)))
        method = self._channel.stream_stream(
            "/containerd.services.content.v1.Content/Write",
            request_serializer=_serialize,
            response_deserializer=content_pb2.WriteContentResponse.FromString,
        )
        last: content_pb2.WriteContentResponse | None = None
        # One response per request, in turn (containerd answers each before it reads the next).
        call = method(metadata=self._metadata(lease), timeout=CALL_TIMEOUT * 6)
        try:
            for request in requests:
                await call.write(request)
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    break
                last = resp
            await call.done_writing()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                return False
            raise _error(exc, f"content write {digest}") from None
        if last is None or last.action != content_pb2.COMMIT or last.digest != digest:
            got = "nothing" if last is None else f"action {last.action}, digest {last.digest!r}"
            raise errors.Internal(f"content write {digest}: commit not confirmed ({got})")
        return True

    # leases

    async def create_lease(self, expire_seconds: float = 3600.0) -> str:
        """A new lease (containerd names it) that expires on its own after `expire_seconds`."""
        expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expire_seconds))
        resp = await self._unary(
            "/containerd.services.leases.v1.Leases/Create",
            leases_pb2.CreateRequest(id=f"wasmvisor-{secrets.token_hex(8)}", labels={GC_EXPIRE_LABEL: expire}),
            leases_pb2.CreateResponse,
            "lease",
        )
        return resp.lease.id

    async def delete_lease(self, lease: str) -> None:
        await self._unary(
            "/containerd.services.leases.v1.Leases/Delete",
            leases_pb2.DeleteRequest(id=lease),
            empty_pb2.Empty,
            f"lease {lease}",
        )


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _error(exc: grpc.aio.AioRpcError, what: str) -> errors.ShimError:
    detail = exc.details() or exc.code().name.lower()
    code = exc.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(f"{what}: not found in containerd ({detail})")
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return errors.AlreadyExists(f"{what}: {detail}")
    if code == grpc.StatusCode.UNAVAILABLE:
        return errors.Unavailable(f"{what}: containerd's gRPC API unavailable: {detail}")
    return errors.RpcError(code.value[0], f"{what}: {detail}")
