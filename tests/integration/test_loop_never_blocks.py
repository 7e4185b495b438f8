"""The supervisor's event loop never waits on a slow Create: Kill, Wait and State of other tasks answer
while one task's Create reads a 200 MiB wasm layer from containerd's content store and writes it out.

A stand-in for containerd's API (Containers/Get, Images/Get, Content/Read and Info) serves one OCI wasm
image. The layer's file in the bundle is made a FIFO beforehand: the supervisor's write of it then
waits for a reader (a disk that is slow, for as long as the test likes), which the test provides only
after Kill of another task has answered."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import orjson
from google.protobuf.empty_pb2 import Empty

from tests.integration.harness import HELLO, SLEEPER, TASK, Harness
from tests.integration.test_task_api import POD, create
from wasmvisor.engines.catalog import MODULE_LAYER
from wasmvisor.proto.containerd.services.containers.v1 import containers_pb2
from wasmvisor.proto.containerd.services.content.v1 import content_pb2
from wasmvisor.proto.containerd.services.images.v1 import images_pb2
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.supervisor.containerd import oci_wasm

LAYER_BYTES = 200 << 20
CHUNK = 4 << 20
IMAGE = "docker.io/wasmvisor/big:1"


def big_module(size: int) -> bytes:
    """HELLO with a custom section that brings it to `size` bytes (wasmtime skips its contents)."""
    name = b"padding"
    payload = size - len(HELLO) - 1 - 5 - 1 - len(name)
    body_len = 1 + len(name) + payload
    leb = bytes([(body_len >> s & 0x7F) | (0x80 if s < 28 else 0) for s in (0, 7, 14, 21, 28)])
    return bytes(HELLO) + b"\x00" + leb + bytes([len(name)]) + name + b"\0" * payload


class StandInContainerd:
    """containerd's API as the supervisor calls it for one container's OCI wasm image."""

    def __init__(self, container_id: str, layer: bytes) -> None:
        self.blobs: dict[str, bytes] = {}
        self.layer = self._add(layer)
        config = self._add(orjson.dumps({"architecture": "wasm", "os": "wasip1"}))
        self.manifest = self._add(orjson.dumps({
            "schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                           "digest": config, "size": len(self.blobs[config])},
            "layers": [{"mediaType": MODULE_LAYER, "digest": self.layer, "size": len(layer)}],
        }))
        self.container_id = container_id

    def _add(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    async def get_container(self, req: Any, ctx: Any) -> Any:
        if req.id != self.container_id:
            await ctx.abort(grpc.StatusCode.NOT_FOUND, f"container {req.id}: not found")
        return containers_pb2.GetContainerResponse(container=containers_pb2.Container(id=req.id, image=IMAGE))

    async def get_image(self, req: Any, ctx: Any) -> Any:
        target = dict(media_type=oci_wasm.MANIFEST_TYPES[0], digest=self.manifest,
                      size=len(self.blobs[self.manifest]))
        return images_pb2.GetImageResponse(image=images_pb2.Image(name=IMAGE, target=target))

    async def read(self, req: Any, ctx: Any) -> AsyncIterator[Any]:
        data = self.blobs[req.digest]
        for offset in range(0, len(data), CHUNK):
            yield content_pb2.ReadContentResponse(offset=offset, data=data[offset:offset + CHUNK])

    async def info(self, req: Any, ctx: Any) -> Any:
        return content_pb2.InfoResponse(info=content_pb2.Info(digest=req.digest, size=len(self.blobs[req.digest])))

    async def serve(self, path: str) -> grpc.aio.Server:
        def unary(fn: Callable[..., Any], req: Any, resp: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString,
                                                       response_serializer=resp.SerializeToString)

        server = grpc.aio.server(options=[("grpc.max_send_message_length", 16 << 20)])
        server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler("containerd.services.containers.v1.Containers", {
                "Get": unary(self.get_container, containers_pb2.GetContainerRequest,
                             containers_pb2.GetContainerResponse)}),
            grpc.method_handlers_generic_handler("containerd.services.images.v1.Images", {
                "Get": unary(self.get_image, images_pb2.GetImageRequest, images_pb2.GetImageResponse)}),
            grpc.method_handlers_generic_handler("containerd.services.content.v1.Content", {
                "Read": grpc.unary_stream_rpc_method_handler(
                    self.read, request_deserializer=content_pb2.ReadContentRequest.FromString,
                    response_serializer=content_pb2.ReadContentResponse.SerializeToString),
                "Info": unary(self.info, content_pb2.InfoRequest, content_pb2.InfoResponse)}),
        ])
        server.add_insecure_port(f"unix://{path}")
        await server.start()
        return server


def waiting_for_a_reader(pid: int) -> bool:
    """Whether a thread of `pid` waits in open(2) of a FIFO for its other end."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "wchan").read_text() == "wait_for_partner":
                return True
        except OSError:
            pass
    return False


def test_kill_of_a_running_task_answers_while_another_create_writes_a_200_mib_layer(harness: Harness) -> None:
    h = harness
    layer = big_module(LAYER_BYTES)
    containerd = StandInContainerd("big", layer)
    server = h.run(containerd.serve(str(h.base / "containerd.sock")))
    try:
        sleeper = h.bundle("sleeper", {"s.wasm": SLEEPER}, ["/s.wasm"], annotations=POD)
        big = h.bundle("big", {}, ["/big.wasm"], annotations=POD)
        c = h.client(h.start_shim(sleeper, "sleeper", env_extra={"WASMVISOR_CACHE_DIR": ""}))
        supervisor = h.call(c, "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid
        create(h, c, "sleeper", sleeper)
        h.call(c, "Start", pb.StartRequest(id="sleeper"), pb.StartResponse)

        # The layer's file is a FIFO (kept under a second name too): its writer waits for a reader.
        folder = big / "wasm"
        folder.mkdir()
        target = folder / f"{containerd.layer.split(':')[1]}.wasm"
        os.mkfifo(target)
        os.link(target, folder / "fifo")
        (big / "stdout").touch()
        md = {"containerd-namespace-ttrpc": "itest"}
        creating = asyncio.run_coroutine_threadsafe(c.call(
            TASK, "Create", pb.CreateTaskRequest(id="big", bundle=str(big), stdout=str(big / "stdout")),
            pb.CreateTaskResponse, metadata=md), h.loop)
        deadline = time.monotonic() + 60
        while not waiting_for_a_reader(supervisor):
            assert not creating.done(), creating.result()
            assert time.monotonic() < deadline, "the supervisor never began writing the layer"
            time.sleep(0.02)

        killer = h.client(h.addresses[0])
        h.call(killer, "Kill", pb.KillRequest(id="sleeper", signal=9), Empty, timeout=10)
        assert h.call(killer, "Wait", pb.WaitRequest(id="sleeper"), pb.WaitResponse).exit_status == 137
        assert h.call(killer, "State", pb.StateRequest(id="sleeper"), pb.StateResponse).exit_status == 137
        assert not creating.done(), "Create finished before its layer was written"

        # Now the disk is fast again: the worker finds the whole layer where the FIFO was.
        real = folder / "real"
        real.write_bytes(layer)
        os.replace(real, target)
        drained = threading.Thread(target=lambda: (folder / "fifo").read_bytes(), daemon=True)
        drained.start()
        creating.result(120)
        drained.join(60)
        h.call(c, "Start", pb.StartRequest(id="big"), pb.StartResponse)
        assert h.call(c, "Wait", pb.WaitRequest(id="big"), pb.WaitResponse).exit_status == 0
        assert (big / "stdout").read_bytes() == b"hello\n"
        for task_id in ("sleeper", "big"):
            h.call(c, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)
    finally:
        h.run(server.stop(None))
