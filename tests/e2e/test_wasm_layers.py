"""OCI Wasm images (the module as an `application/wasm` layer) through a real containerd: they run,
their compiled form is kept in containerd's content store and used by later runs, and bad layers
give clear errors. `wasmvisor image build` makes both image forms and imports them.

This module starts its own private containerd (of the session's release line) so that the node's
module cache of its shims is a folder of this module: clearing it between runs shows whether a
run compiled (debug line `module cache: compiled and stored`) or used the content store's copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from tests.e2e.conftest import REPO, SESSION_TOKEN, shim_dir
from tests.e2e.containerd import PrivateContainerd, private_containerd
from tests.e2e.ctr import Ctr
from wasmvisor.engines.catalog import WASMTIME, wasmtime_fingerprint
from wasmvisor.image import Layer, build_oci_tar
from wasmvisor.image_layouts import build_wasm_image
from wasmvisor.supervisor.containerd import oci_wasm

COMPILED = "module cache: compiled and stored"
FROM_STORE = "from the content store"
LABEL = oci_wasm.precompiled_label(WASMTIME.name, wasmtime_fingerprint())
GC_LABEL = oci_wasm.gc_ref_label(WASMTIME.name, wasmtime_fingerprint())


def variant(wasm: bytes, tag: str) -> bytes:
    """The same module with a custom section naming `tag`: same behaviour, another digest."""
    name = b"wasmvisor-test"
    body = bytes([len(name)]) + name + tag.encode()
    assert len(body) < 128
    return wasm + b"\x00" + bytes([len(body)]) + body


NO_WASM_LAYERS_ON_1_6 = (
    "containerd 1.6.20 cannot unpack images with application/wasm layers (ctr images import: \"failed to get "
    "stream processor for application/wasm: no processor for media-type: unknown\"); OCI Wasm layers need "
    "containerd >= 1.6.25, 1.7.7 or 2.0: run with WASMVISOR_CONTAINERD=1.7 or 2.1"
)


@pytest.fixture(scope="module")
def node(
    containerd: PrivateContainerd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PrivateContainerd, Path]]:
    """A private containerd of the session's line whose shims use a module cache of ours."""
    cache = tmp_path_factory.mktemp("module-cache")
    with private_containerd(shim_dirs=[shim_dir()], binaries=containerd.binaries, line=containerd.line,
                            extra_env={"WASMVISOR_CACHE_DIR": str(cache)}) as instance:
        yield instance, cache


@pytest.fixture
def wasm_layers_unpack(node: tuple[PrivateContainerd, Path]) -> None:
    if node[0].line == "1.6":
        pytest.skip(NO_WASM_LAYERS_ON_1_6)


@pytest.fixture(scope="module")
def ctr(node: tuple[PrivateContainerd, Path]) -> Iterator[Ctr]:
    client = node[0].ctr(f"wv{SESSION_TOKEN}-wasmlayers")
    yield client
    client.remove_all()


@pytest.fixture(scope="module")
def hello(guest_wasm: dict[str, Path]) -> bytes:
    return guest_wasm["hello"].read_bytes()


@pytest.fixture
def layer_image(
    ctr: Ctr, hello: bytes, tmp_path: Path, request: pytest.FixtureRequest, wasm_layers_unpack: None
) -> Callable[..., tuple[str, str]]:
    """layer_image(tag) -> (ref, layer digest) of a fresh wasm-layer image of the hello module."""

    def make(tag: str = "", module: bytes = b"") -> tuple[str, str]:
        tag = tag or request.node.name
        module = module or variant(hello, tag)
        short = hashlib.sha256(tag.encode()).hexdigest()[:12]
        ref = f"docker.io/wasmvisor-test/layer-{short}:latest"
        tar = tmp_path / f"{short}.tar"
        build_wasm_image(tar, ref, module, layout="wasm-layer", module_name="hello.wasm")
        ctr.import_image(tar)
        return ref, Layer.wasm(module).digest

    return make


def content_labels(ctr: Ctr) -> dict[str, dict[str, str]]:
    """`ctr content ls`: digest -> labels."""
    out = ctr.run("content", "ls", check=True).stdout
    result = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        if not parts:
            continue
        labels = {}
        if len(parts) >= 2 and "=" in parts[-1]:
            for pair in parts[-1].split(","):
                key, _, value = pair.partition("=")
                labels[key] = value
        result[parts[0]] = labels
    return result


def wait_for_label(ctr: Ctr, digest: str, key: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        value = content_labels(ctr).get(digest, {}).get(key)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no label {key} on {digest}: {content_labels(ctr).get(digest)}\n"
                                 + "\n".join(x for x in ctr.containerd.log_text().splitlines() if "wasm" in x)[-6000:])
        time.sleep(0.1)


def run_hello(ctr: Ctr, node: tuple[PrivateContainerd, Path], ref: str, cid: str) -> str:
    """Run the image; assert it greets; return the containerd log lines of this run."""
    since = node[0].log_size()
    result = ctr.run_container(ref, cid)
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout.lower()
    time.sleep(0.3)  # the shim's last log lines
    return node[0].log_text(since)


def clear_cache(cache: Path) -> None:
    for entry in cache.iterdir():
        if entry.is_file():
            entry.unlink()


def test_wasm_layer_image_runs_and_prints_hello(
    ctr: Ctr, node: tuple[PrivateContainerd, Path], layer_image: Callable[..., tuple[str, str]], container_id: str
) -> None:
    ref, layer = layer_image()
    log = run_hello(ctr, node, ref, container_id)
    assert f"runs 1 wasm layer(s) of image {ref}: {layer} (application/wasm)" in log


def test_first_run_labels_the_layer_and_the_second_run_uses_the_precompiled_blob(
    ctr: Ctr, node: tuple[PrivateContainerd, Path], layer_image: Callable[..., tuple[str, str]],
    new_container_id: Callable[[str], str],
) -> None:
    ref, layer = layer_image()
    first = run_hello(ctr, node, ref, new_container_id("first"))
    assert COMPILED in first
    compiled = wait_for_label(ctr, layer, LABEL)
    labels = content_labels(ctr)
    assert labels[layer][GC_LABEL] == compiled
    assert labels[compiled][oci_wasm.source_label(layer)] == layer
    assert compiled.startswith("sha256:")

    clear_cache(node[1])  # a node that never compiled it: only the content store has it
    second = run_hello(ctr, node, ref, new_container_id("second"))
    assert f"{layer}: using precompiled {compiled} {FROM_STORE}" in second
    assert COMPILED not in second


def test_the_compiled_blob_lives_exactly_as_long_as_the_image(
    ctr: Ctr, node: tuple[PrivateContainerd, Path], layer_image: Callable[..., tuple[str, str]],
    new_container_id: Callable[[str], str],
) -> None:
    # Its own code (not a custom-section variant): its compiled blob is shared with no other layer.
    text = (REPO / "tests" / "guests" / "hello.wat").read_text().replace('"hello from wasmvisor\\n"',
                                                                         '"hello from gc test!\\n"')
    assert "gc test" in text
    ref, layer = layer_image(module=bytes(wasmtime.wat2wasm(text)))
    run_hello(ctr, node, ref, new_container_id("run"))
    compiled = wait_for_label(ctr, layer, LABEL)
    other, _ = layer_image("another image, removed to make containerd collect garbage")
    ctr.run("images", "rm", "--sync", other, check=True)
    assert compiled in content_labels(ctr), "garbage collection took the compiled blob of a live image"
    ctr.run("images", "rm", "--sync", ref, check=True)
    left = content_labels(ctr)
    assert layer not in left and compiled not in left, "the compiled blob outlived its image"


def test_deleted_compiled_blob_makes_the_next_run_compile_again(
    ctr: Ctr, node: tuple[PrivateContainerd, Path], layer_image: Callable[..., tuple[str, str]],
    new_container_id: Callable[[str], str],
) -> None:
    ref, layer = layer_image()
    run_hello(ctr, node, ref, new_container_id("first"))
    compiled = wait_for_label(ctr, layer, LABEL)
    ctr.run("content", "rm", compiled, check=True)
    clear_cache(node[1])
    log = run_hello(ctr, node, ref, new_container_id("again"))
    assert "is gone: compiling again" in log
    assert COMPILED in log
    assert wait_for_label(ctr, layer, LABEL) == compiled
    deadline = time.monotonic() + 10
    while compiled not in content_labels(ctr):  # stored again (same bytes, same digest)
        assert time.monotonic() < deadline, "the compiled blob was not stored again"
        time.sleep(0.1)


def test_label_of_another_engine_build_is_ignored_and_the_layer_recompiled(
    ctr: Ctr, node: tuple[PrivateContainerd, Path], layer_image: Callable[..., tuple[str, str]],
    new_container_id: Callable[[str], str],
) -> None:
    ref, layer = layer_image()
    # What a previous wasmtime would have left: its own label, and a blob that is not ours
    # under our key (a label someone else wrote).
    other = f"{oci_wasm.PRECOMPILED_PREFIX}wasmtime/{'0' * 16}"
    ctr.run("content", "label", layer, f"{other}={layer}", f"{LABEL}={layer}", check=True)
    clear_cache(node[1])
    log = run_hello(ctr, node, ref, new_container_id("run"))
    assert "is not a wasmvisor precompiled form of it: ignored" in log
    assert COMPILED in log
    deadline = time.monotonic() + 10
    while content_labels(ctr)[layer].get(LABEL) == layer:
        assert time.monotonic() < deadline, "our label was not rewritten"
        time.sleep(0.1)
    labels = content_labels(ctr)
    assert labels[labels[layer][LABEL]][oci_wasm.FINGERPRINT_LABEL] == oci_wasm.fingerprint_id(wasmtime_fingerprint())
    assert labels[layer][other] == layer  # another build's label is left alone


def _bad_image(ctr: Ctr, tmp_path: Path, name: str, layers: list[Layer]) -> str:
    ref = f"docker.io/wasmvisor-test/{name}:latest"
    tar = tmp_path / f"{name}.tar"
    build_oci_tar(tar, ref, {}, entrypoint=["/app.wasm"], extra_layers=layers)
    ctr.import_image(tar)
    return ref


def test_layer_of_an_unsupported_media_type_fails_create_naming_it(
    ctr: Ctr, hello: bytes, tmp_path: Path, container_id: str, wasm_layers_unpack: None
) -> None:
    layer = Layer("application/vnd.example.unknown.v1+wasm", variant(hello, "unsupported"))
    ref = _bad_image(ctr, tmp_path, "unsupported-layer", [layer])
    result = ctr.run_container(ref, container_id)
    assert result.returncode != 0
    assert f"layer {layer.digest} has media type 'application/vnd.example.unknown.v1+wasm'" in result.stderr
    assert "does not run" in result.stderr


def test_two_wasm_layers_fail_create(
    ctr: Ctr, hello: bytes, tmp_path: Path, container_id: str, wasm_layers_unpack: None
) -> None:
    layers = [Layer.wasm(variant(hello, "one")), Layer.wasm(variant(hello, "two"))]
    ref = _bad_image(ctr, tmp_path, "two-layers", layers)
    result = ctr.run_container(ref, container_id)
    assert result.returncode != 0
    assert "2 wasm layers" in result.stderr and "runs 1" in result.stderr


def test_unreadable_layer_fails_create_naming_it(
    ctr: Ctr, layer_image: Callable[..., tuple[str, str]], container_id: str
) -> None:
    ref, layer = layer_image()
    ctr.run("content", "rm", layer, check=True)
    result = ctr.run_container(ref, container_id)
    assert result.returncode != 0
    assert f"wasm layer {layer}: cannot read it from containerd's content store" in result.stderr


@pytest.mark.parametrize("layout", ["rootfs", "wasm-layer"])
def test_wasmvisor_image_build_imports_an_image_that_runs(
    ctr: Ctr, node: tuple[PrivateContainerd, Path], hello: bytes, tmp_path: Path, layout: str, container_id: str
) -> None:
    if layout == "wasm-layer" and node[0].line == "1.6":
        pytest.skip(NO_WASM_LAYERS_ON_1_6)
    wasm = tmp_path / "greeter.wasm"
    wasm.write_bytes(variant(hello, f"cli-{layout}"))
    ref = f"docker.io/wasmvisor-test/cli-{layout}:1"
    out = tmp_path / "greeter.tar"
    env = node[0].environment()
    env["PATH"] = f"{node[0].binaries.bin_dir}{os.pathsep}{env['PATH']}"
    cli = shutil.which("wasmvisor", path=str(Path(sys.executable).parent)) or "wasmvisor"
    proc = subprocess.run(
        [cli, "image", "build", "--wasm", str(wasm), "--name", ref, "--layout", layout, "-o", str(out),
         "--import", "--address", node[0].address, "--namespace", ctr.namespace],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"imported {ref}" in proc.stdout
    result = ctr.run_container(ref, container_id)
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout.lower()
