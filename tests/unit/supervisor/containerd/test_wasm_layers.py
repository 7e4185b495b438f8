"""Create's wasm layer lookup and the precompiled copies, against a stand-in for containerd's API."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from wasmvisor import errors
from wasmvisor.engines.catalog import COMPONENT_LAYER, MODULE_LAYER, WASMTIME
from wasmvisor.engines.module_cache import ModuleCache
from wasmvisor.spec import Spec
from wasmvisor.supervisor.containerd import oci_wasm, wasm_layers

ENGINE = "wasmvisor.engines.wasmtime_engine:WasmtimeEngine"
MODULE = b"\0asm\x01\0\0\0"
IMAGE = "docker.io/x/app:1"
TAR = "application/vnd.oci.image.layer.v1.tar"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeContainerd:
    """Blobs with labels, one container and one image, as containerd's API shows them."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.images: dict[str, tuple[str, str]] = {}
        self.containers: dict[str, str] = {}
        self.leases: set[str] = set()
        self.written: list[tuple[str, str]] = []
        self.reads: list[str] = []

    def add(self, data: bytes) -> str:
        d = digest(data)
        self.blobs[d] = data
        self.labels.setdefault(d, {})
        return d

    def add_image(self, layers: list[tuple[str, bytes]], architecture: str = "wasm") -> list[str]:
        config = self.add(orjson.dumps({"architecture": architecture, "os": "wasip1"}))
        descs = [{"mediaType": mt, "digest": self.add(data), "size": len(data)} for mt, data in layers]
        manifest = self.add(orjson.dumps({"schemaVersion": 2, "config": {"mediaType": "c", "digest": config},
                                          "layers": descs}))
        self.images[IMAGE] = (oci_wasm.MANIFEST_TYPES[0], manifest)
        self.containers["c1"] = IMAGE
        return [d["digest"] for d in descs]  # type: ignore[misc]

    # the ContainerdClient interface
    def __call__(self, address: str, namespace: str) -> FakeContainerd:
        return self

    async def __aenter__(self) -> FakeContainerd:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def container_image(self, container_id: str) -> str:
        if container_id not in self.containers:
            raise errors.NotFound(f"container {container_id}: not found")
        return self.containers[container_id]

    async def image_target(self, name: str) -> tuple[str, str, int]:
        media_type, d = self.images[name]
        return media_type, d, len(self.blobs[d])

    async def info(self, d: str) -> Any:
        if d not in self.blobs:
            raise errors.NotFound(f"content {d}: not found")
        return SimpleNamespace(digest=d, labels=dict(self.labels[d]))

    async def read(self, d: str, limit: int = 0) -> bytes:
        if d not in self.blobs:
            raise errors.NotFound(f"content {d}: not found in containerd")
        self.reads.append(d)
        return self.blobs[d]

    async def set_labels(self, d: str, labels: Mapping[str, str]) -> Any:
        for k, v in labels.items():
            if v:
                self.labels[d][k] = v
            else:
                self.labels[d].pop(k, None)
        return await self.info(d)

    async def write(self, data: bytes, d: str, labels: Mapping[str, str], lease: str) -> bool:
        assert lease in self.leases, "writes happen under a lease"
        assert digest(data) == d
        self.written.append((d, lease))
        if d in self.blobs:
            return False
        self.blobs[d] = data
        self.labels[d] = dict(labels)
        return True

    async def create_lease(self, expire_seconds: float = 3600.0) -> str:
        self.leases.add("l1")
        return "l1"

    async def delete_lease(self, lease: str) -> None:
        self.leases.discard(lease)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeContainerd:
    monkeypatch.setenv("WASMVISOR_CACHE_DIR", str(tmp_path / "cache"))
    return FakeContainerd()


def spec(args0: str = "/app.wasm") -> Spec:
    return Spec(args=(args0,), env=(), cwd="/", terminal=False, annotations={}, root_path="rootfs")


def reader(fake: FakeContainerd) -> wasm_layers.WasmLayerReader:
    return wasm_layers.WasmLayerReader("/run/fake.sock", "ns", ENGINE, client=fake)  # type: ignore[arg-type]


def create(fake: FakeContainerd, tmp_path: Path, args0: str = "/app.wasm") -> wasm_layers.WasmLayers:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    return asyncio.run(reader(fake).for_container("c1", str(tmp_path), str(tmp_path / "rootfs"), spec(args0)))


def cache() -> ModuleCache[object]:
    fingerprint = WASMTIME.fingerprint
    assert fingerprint is not None
    return ModuleCache[object](Path(os.environ["WASMVISOR_CACHE_DIR"]), fingerprint())


def test_the_wasm_layer_is_written_to_the_bundle_for_the_worker(fake: FakeContainerd, tmp_path: Path) -> None:
    [layer] = fake.add_image([(MODULE_LAYER, MODULE)])
    result = create(fake, tmp_path)
    [file] = result.files
    assert (file.media_type, file.digest) == (MODULE_LAYER, layer)
    assert file.path == str(tmp_path / "wasm" / f"{layer.partition(':')[2]}.wasm")
    assert Path(file.path).read_bytes() == MODULE
    assert Path(file.path).stat().st_mode & 0o777 == 0o600


def test_an_index_target_gives_the_wasm_platform_manifest(fake: FakeContainerd, tmp_path: Path) -> None:
    [layer] = fake.add_image([(MODULE_LAYER, MODULE)])
    _, manifest = fake.images[IMAGE]
    other = fake.add(b"{}")
    index = fake.add(orjson.dumps({"manifests": [
        {"mediaType": oci_wasm.MANIFEST_TYPES[0], "digest": other, "platform": {"os": "plan9", "architecture": "x"}},
        {"mediaType": oci_wasm.MANIFEST_TYPES[0], "digest": manifest,
         "platform": {"os": "wasip1", "architecture": "wasm"}},
    ]}))
    fake.images[IMAGE] = (oci_wasm.INDEX_TYPES[0], index)
    result = create(fake, tmp_path)
    assert [f.digest for f in result.files] == [layer]
    assert result.manifest == manifest


def test_an_ordinary_image_gets_no_layers(fake: FakeContainerd, tmp_path: Path) -> None:
    fake.add_image([(TAR, b"tar")], architecture="amd64")
    assert create(fake, tmp_path).files == ()


def test_a_module_in_the_rootfs_asks_nothing_of_containerd(fake: FakeContainerd, tmp_path: Path) -> None:
    fake.add_image([(MODULE_LAYER, MODULE)])
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "app.wasm").write_bytes(MODULE)
    assert create(fake, tmp_path).files == ()
    assert fake.reads == []


def test_an_ordinary_create_does_not_import_grpc(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "app.wasm").write_bytes(MODULE)
    code = f"""
import asyncio, sys
from wasmvisor.spec import Spec
from wasmvisor.supervisor import daemon
from wasmvisor.supervisor.tasks import registry as tasks
from wasmvisor.supervisor.containerd import wasm_layers
reader = wasm_layers.WasmLayerReader("/nonexistent.sock", "ns", "x:Y")
spec = Spec(args=("/app.wasm",), env=(), cwd="/", terminal=False, annotations={{}}, root_path="rootfs")
r = asyncio.run(reader.for_container("c", {str(tmp_path)!r}, {str(tmp_path / "rootfs")!r}, spec))
assert r.files == ()
assert "grpc" not in sys.modules, "grpc imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_container_or_no_containerd_means_no_layers(fake: FakeContainerd, tmp_path: Path) -> None:
    assert create(fake, tmp_path).files == ()  # the worker then reports the missing module as usual


def test_an_unsupported_layer_type_fails_create(fake: FakeContainerd, tmp_path: Path) -> None:
    [layer] = fake.add_image([("application/x-other", MODULE)])
    with pytest.raises(errors.InvalidArgument, match=f"layer {layer} has media type 'application/x-other'"):
        create(fake, tmp_path)


def test_two_wasm_layers_fail_create(fake: FakeContainerd, tmp_path: Path) -> None:
    fake.add_image([(MODULE_LAYER, MODULE), (COMPONENT_LAYER, MODULE + b"\0")])
    with pytest.raises(errors.InvalidArgument, match="2 wasm layers"):
        create(fake, tmp_path)


def test_an_unreadable_layer_fails_create_naming_it(fake: FakeContainerd, tmp_path: Path) -> None:
    [layer] = fake.add_image([(MODULE_LAYER, MODULE)])
    del fake.blobs[layer]
    with pytest.raises(errors.FailedPrecondition, match=f"wasm layer {layer}: cannot read it from containerd"):
        create(fake, tmp_path)


def test_a_layer_whose_bytes_do_not_match_its_digest_fails(fake: FakeContainerd, tmp_path: Path) -> None:
    [layer] = fake.add_image([(MODULE_LAYER, MODULE)])
    fake.blobs[layer] = MODULE + b"x"
    with pytest.raises(errors.InvalidArgument, match="does not match its digest"):
        create(fake, tmp_path)


def store(result: wasm_layers.WasmLayers) -> None:
    async def go() -> None:
        result.after_ready()
        assert result.reader is not None
        await result.reader.drain(5)

    asyncio.run(go())


def test_compiled_form_is_stored_under_a_lease_and_labelled_on_layer_and_manifest(
    fake: FakeContainerd, tmp_path: Path
) -> None:
    [layer] = fake.add_image([(MODULE_LAYER, MODULE)])
    result = create(fake, tmp_path)
    cache().put(MODULE, b"compiled!")  # what the worker's compile left in the node cache
    store(result)
    compiled = digest(b"compiled!")
    assert fake.written == [(compiled, "l1")]
    assert fake.leases == set(), "the lease is removed once the labels hold the blob"
    fp = WASMTIME.fingerprint() if WASMTIME.fingerprint else ""
    assert fake.labels[layer][oci_wasm.precompiled_label("wasmtime", fp)] == compiled
    assert fake.labels[layer][oci_wasm.gc_ref_label("wasmtime", fp)] == compiled
    assert fake.labels[result.manifest][oci_wasm.gc_ref_label("wasmtime", fp)] == compiled
    assert oci_wasm.is_our_compiled_blob(fake.labels[compiled], layer, "wasmtime", fp)


def test_a_later_create_seeds_the_node_cache_from_the_content_store(fake: FakeContainerd, tmp_path: Path) -> None:
    fake.add_image([(MODULE_LAYER, MODULE)])
    result = create(fake, tmp_path)
    cache().put(MODULE, b"compiled!")
    store(result)
    for entry in Path(os.environ["WASMVISOR_CACHE_DIR"]).iterdir():
        entry.unlink()  # e.g. another node's cache, or a wiped one
    fake.written.clear()
    again = create(fake, tmp_path)
    assert cache().compiled(MODULE) == b"compiled!"
    store(again)
    assert fake.written == [], "nothing to store: the content store has it"


def test_a_label_of_another_build_or_a_foreign_blob_is_ignored(fake: FakeContainerd, tmp_path: Path) -> None:
    [layer] = fake.add_image([(MODULE_LAYER, MODULE)])
    fp = WASMTIME.fingerprint() if WASMTIME.fingerprint else ""
    foreign = fake.add(b"not compiled by us")
    fake.labels[layer][oci_wasm.precompiled_label("wasmtime", fp)] = foreign
    fake.labels[layer][oci_wasm.precompiled_label("wasmtime", "older wasmtime")] = foreign
    result = create(fake, tmp_path)
    assert cache().compiled(MODULE) is None, "a blob that is not ours is never handed to the engine"
    cache().put(MODULE, b"compiled!")
    store(result)
    assert fake.labels[layer][oci_wasm.precompiled_label("wasmtime", fp)] == digest(b"compiled!")
    assert fake.labels[layer][oci_wasm.precompiled_label("wasmtime", "older wasmtime")] == foreign


def test_a_deleted_compiled_blob_is_compiled_and_stored_again(fake: FakeContainerd, tmp_path: Path) -> None:
    fake.add_image([(MODULE_LAYER, MODULE)])
    result = create(fake, tmp_path)
    cache().put(MODULE, b"compiled!")
    store(result)
    del fake.blobs[digest(b"compiled!")]
    for entry in Path(os.environ["WASMVISOR_CACHE_DIR"]).iterdir():
        entry.unlink()
    again = create(fake, tmp_path)
    assert cache().compiled(MODULE) is None  # the worker compiles
    cache().put(MODULE, b"compiled!")
    store(again)
    assert digest(b"compiled!") in fake.blobs


def test_precompile_failures_are_warnings(
    fake: FakeContainerd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_image([(MODULE_LAYER, MODULE)])
    result = create(fake, tmp_path)
    cache().put(MODULE, b"compiled!")

    async def broken(*args: object) -> str:
        raise errors.Unavailable("containerd went away")

    fake.create_lease = broken  # type: ignore[method-assign,assignment]
    store(result)
    assert "storing precompiled wasm layers failed: containerd went away" in caplog.text
