"""OCI Wasm layers at Create: find the container's wasm layers in containerd's content store, write
them to the bundle for the worker, and keep their compiled form in the content store.

A `WasmLayerReader` (one per supervisor, made by daemon.py and handed to the task registry) holds
containerd's address; its `for_container` runs at Create, before the worker is spawned. An image
whose module is a file in the rootfs (the entrypoint resolves to a regular file) is an ordinary
image: nothing is asked of containerd and grpcio is not even imported. Otherwise containerd's
gRPC API gives the image behind the container (Containers.Get, Images.Get, Content.Read of
index/manifest/config): for an image whose config says `architecture: wasm`, its wasm layers
(checked against the engine's layer types) are written to `<bundle>/wasm/<hex>.wasm` (0600) and
handed to the worker by path.

Precompiled layers: when the layer carries our label for the current engine build
(`wasmvisor.io/precompiled/<engine>/<fingerprint id>`) and the blob it names says it is ours, its
bytes seed the node's module cache, so the worker deserializes instead of compiling. When it does
not, the worker compiles (into the module cache) and `WasmLayers.after_ready` schedules, in the
background, the upload of the compiled bytes under a lease, with the layer label and
`containerd.io/gc.ref.content.*` references on the layer and the manifest. Precompile failures
are warnings: they never fail a task.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wasmvisor import errors
from wasmvisor.engines.catalog import EngineInfo, info_for
from wasmvisor.ipc.messages import LayerFile
from wasmvisor.spec import Spec, parse_entrypoint, resolve_in_root
from wasmvisor.supervisor.containerd import oci_wasm
from wasmvisor.tracing import NO_TRACER, Tracer

if TYPE_CHECKING:
    from wasmvisor.engines.module_cache import ModuleCache
    from wasmvisor.supervisor.containerd.content import ContainerdClient

log = logging.getLogger(__name__)

MAX_LAYER_BYTES = 512 << 20
MAX_DOC_BYTES = 4 << 20
"""Index, manifest and config documents bigger than this are refused."""

ClientFactory = Callable[[str, str], "ContainerdClient"]
"""(address, namespace) -> a ContainerdClient, or a stand-in with its methods."""


@dataclass
class PendingLayer:
    descriptor: oci_wasm.Descriptor
    wasm: bytes
    has_precompiled: bool


@dataclass
class WasmLayers:
    """The outcome of `for_container`: the files the worker gets, and what to precompile."""

    files: tuple[LayerFile, ...] = ()
    engine: EngineInfo | None = None
    manifest: str = ""
    pending: list[PendingLayer] = field(default_factory=list)
    reader: WasmLayerReader | None = None
    """The reader that found them, which stores their compiled form."""

    def after_ready(self) -> None:
        """Schedule storing the compiled form of each layer that has none in the content store
        yet (the worker just compiled it into the node's module cache)."""
        todo = [p for p in self.pending if not p.has_precompiled]
        if not todo or self.reader is None or self.engine is None or self.engine.fingerprint is None:
            return
        self.reader.store_later(self.engine, todo, self.manifest)


class WasmLayerReader:
    """The OCI wasm layers of one supervisor's containers, read from containerd's API at `address`
    (the shim's `-address`, or $GRPC_ADDRESS on 1.7+; empty: no API, so no wasm layers) in
    `namespace`, for the engine `engine_ref`. `client(address, namespace)` makes the API client
    (by default a ContainerdClient, imported only when a container may have wasm layers)."""

    def __init__(self, address: str, namespace: str, engine_ref: str, client: ClientFactory | None = None,
                 tracer: Tracer = NO_TRACER) -> None:
        self.address = address
        self.namespace = namespace
        self.engine_ref = engine_ref
        self._client = client
        self.tracer = tracer
        self._background: set[asyncio.Task[None]] = set()

    def _connect(self) -> ContainerdClient:
        if self._client is None:
            from wasmvisor.supervisor.containerd.content import ContainerdClient  # grpcio: only for wasm images

            self._client = ContainerdClient
        return self._client(self.address, self.namespace)

    async def for_container(self, task_id: str, bundle: str, rootfs: str, spec: Spec | None) -> WasmLayers:
        """The wasm layers of the container's image (none for an ordinary image). Raises
        InvalidArgument for layers the engine cannot run, FailedPrecondition for unreadable ones."""
        if module_in_rootfs(spec, rootfs) or not self.address:
            return WasmLayers()
        engine = info_for(self.engine_ref)
        async with self._connect() as client:
            try:
                image = await client.container_image(task_id)
                if not image:
                    return WasmLayers()
                manifest, layers = await _image_layers(client, image, engine)
            except (errors.NotFound, errors.Unavailable) as exc:
                # Not a container containerd knows (a test harness), or no API: the worker reports
                # the missing module as for any image.
                log.debug("no wasm layers for %s: %s", task_id, exc)
                return WasmLayers()
            if not layers:
                return WasmLayers()
            result = WasmLayers(engine=engine, manifest=manifest.digest, reader=self)
            folder = os.path.join(bundle, "wasm")
            os.makedirs(folder, mode=0o700, exist_ok=True)
            files = []
            for layer in layers:
                what = f"image {image}: wasm layer {layer.digest}"
                try:
                    with self.tracer.span("containerd/read-wasm-layer", {
                        "wasmvisor.task.id": task_id, "wasmvisor.module.digest": layer.digest,
                        "oci.media_type": layer.media_type,
                    }):
                        data = await client.read(layer.digest, MAX_LAYER_BYTES)
                except errors.ShimError as exc:
                    raise errors.FailedPrecondition(f"{what}: cannot read it from containerd's content store: "
                                                    f"{exc.message}") from None
                path = os.path.join(folder, f"{layer.hex}.wasm")
                # Up to 512 MiB to hash and write: on a thread, so that the loop answers other tasks.
                await asyncio.to_thread(_check_and_write, data, layer.digest, what, path)
                files.append(LayerFile(media_type=layer.media_type, digest=layer.digest, path=path))
                seeded = await seed_precompiled(client, engine, layer, data)
                result.pending.append(PendingLayer(layer, data, seeded))
            result.files = tuple(files)
            log.info("task %s runs %d wasm layer(s) of image %s: %s", task_id, len(files), image,
                     ", ".join(f"{x.digest} ({x.media_type})" for x in files))
            return result

    def store_later(self, engine: EngineInfo, todo: Sequence[PendingLayer], manifest: str) -> None:
        """Store the compiled form of `todo` in the background (`drain` waits for it)."""
        task = asyncio.get_running_loop().create_task(self._store_precompiled(engine, todo, manifest),
                                                      name="wasm-precompile")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _store_precompiled(self, engine: EngineInfo, todo: Sequence[PendingLayer], manifest: str) -> None:
        assert engine.fingerprint is not None
        cache = _module_cache(engine.fingerprint())
        if cache is None:
            log.debug("module cache off: no precompiled layers to store")
            return
        try:
            async with self._connect() as client:
                for layer in todo:
                    with self.tracer.span("containerd/upload-precompiled", {
                        "wasmvisor.module.digest": layer.descriptor.digest, "wasmvisor.engine": engine.name,
                    }):
                        await store_precompiled(client, cache, engine, layer, manifest)
        except Exception as exc:
            log.warning("storing precompiled wasm layers failed: %s", exc)

    async def drain(self, timeout: float) -> None:
        """Let background precompile uploads finish (at shutdown), at most `timeout` seconds."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)


def _check_and_write(data: bytes, digest: str, what: str, path: str) -> None:
    """Check the layer against its digest, then write it for the worker (root's alone)."""
    oci_wasm.check_digest(data, digest, what)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "wb") as f:
        f.write(data)


def module_in_rootfs(spec: Spec | None, rootfs: str) -> bool:
    """Whether the entrypoint names a regular file of the rootfs (an ordinary image)."""
    if spec is None or not spec.args:
        return True  # nothing to look up: the worker reports the spec's problem
    try:
        path, _ = parse_entrypoint(spec.args[0])
        return stat.S_ISREG(os.stat(resolve_in_root(rootfs, path, spec.cwd)).st_mode)
    except (OSError, errors.ShimError):
        return False


async def _image_layers(
    client: ContainerdClient, image: str, engine: EngineInfo
) -> tuple[oci_wasm.Descriptor, list[oci_wasm.Descriptor]]:
    media_type, digest, size = await client.image_target(image)
    target = oci_wasm.Descriptor(media_type, digest, size)
    doc = oci_wasm.parse_json(await client.read(digest, MAX_DOC_BYTES), f"image {image}: {digest}")
    if media_type in oci_wasm.INDEX_TYPES or (not media_type and "manifests" in doc):
        target = oci_wasm.choose_manifest(doc, f"image {image}: index {digest}")
        doc = oci_wasm.parse_json(await client.read(target.digest, MAX_DOC_BYTES),
                                  f"image {image}: manifest {target.digest}")
    config_desc, layers = oci_wasm.manifest_parts(doc, f"image {image}: manifest {target.digest}")
    config = oci_wasm.parse_json(await client.read(config_desc.digest, MAX_DOC_BYTES),
                                 f"image {image}: config {config_desc.digest}")
    return target, oci_wasm.wasm_layers(config, layers, engine, image, config_desc.media_type)


def _module_cache(fingerprint: str) -> ModuleCache[object] | None:
    from wasmvisor.engines.module_cache import ModuleCache  # no wasmtime: it only stores bytes

    return ModuleCache[object].from_env(fingerprint)


async def seed_precompiled(
    client: ContainerdClient, engine: EngineInfo, layer: oci_wasm.Descriptor, wasm: bytes
) -> bool:
    """Whether the layer has a usable compiled form in the content store for this engine build;
    when the node's module cache lacks it, it is copied there (so the worker does not compile)."""
    if engine.fingerprint is None:
        return True  # nothing to precompile: never schedule an upload
    fingerprint = engine.fingerprint()
    try:
        labels = (await client.info(layer.digest)).labels
        compiled = labels.get(oci_wasm.precompiled_label(engine.name, fingerprint), "")
        if not compiled:
            log.debug("wasm layer %s: no precompiled form for %s", layer.digest, engine.name)
            return False
        try:
            blob = await client.info(compiled)
        except errors.NotFound:
            log.info("wasm layer %s: precompiled blob %s is gone: compiling again", layer.digest, compiled)
            return False
        if not oci_wasm.is_our_compiled_blob(blob.labels, layer.digest, engine.name, fingerprint):
            log.warning("wasm layer %s: blob %s is not a wasmvisor precompiled form of it: ignored",
                        layer.digest, compiled)
            return False
        cache = _module_cache(fingerprint)
        if cache is None:
            return True
        if await asyncio.to_thread(cache.compiled, wasm) is not None:  # hashes the layer: off the loop
            log.debug("wasm layer %s: the node's module cache already holds it compiled", layer.digest)
            return True
        data = await client.read(compiled, MAX_LAYER_BYTES * 4)
        oci_wasm.check_digest(data, compiled, f"precompiled blob {compiled}")
        if not await asyncio.get_running_loop().run_in_executor(None, cache.put, wasm, data):
            return False  # the cache cannot be used (warned once): the worker compiles in memory
        log.info("wasm layer %s: using precompiled %s from the content store", layer.digest, compiled)
        return True
    except Exception as exc:
        log.warning("wasm layer %s: precompiled form unusable (%s): compiling", layer.digest, exc)
        return False


async def store_precompiled(
    client: ContainerdClient, cache: ModuleCache[object], engine: EngineInfo, layer: PendingLayer, manifest: str
) -> None:
    """Upload the layer's compiled form (from the node's module cache) under a lease and label the
    layer (and the manifest) with it."""
    import hashlib

    assert engine.fingerprint is not None
    fingerprint = engine.fingerprint()
    digest = layer.descriptor.digest
    compiled = await asyncio.to_thread(cache.compiled, layer.wasm)  # hashes the layer: off the loop
    if compiled is None:
        log.debug("wasm layer %s: not in the module cache: nothing to store", digest)
        return
    compiled_digest = "sha256:" + (await asyncio.to_thread(hashlib.sha256, compiled)).hexdigest()
    lease = await client.create_lease()
    try:
        await client.write(compiled, compiled_digest, oci_wasm.compiled_blob_labels(digest, engine.name, fingerprint),
                           lease)
        # A blob that existed (another task stored it meanwhile) keeps its labels; make sure.
        await client.set_labels(compiled_digest, oci_wasm.compiled_blob_labels(digest, engine.name, fingerprint))
        await client.set_labels(digest, {
            oci_wasm.precompiled_label(engine.name, fingerprint): compiled_digest,
            oci_wasm.gc_ref_label(engine.name, fingerprint): compiled_digest,
        })
        if manifest:
            await client.set_labels(manifest, {oci_wasm.gc_ref_label(engine.name, fingerprint): compiled_digest})
    finally:
        await client.delete_lease(lease)
    log.info("wasm layer %s: stored its precompiled form %s (%d bytes, %s)", digest, compiled_digest, len(compiled),
             engine.name)
