"""OCI Wasm images, the pure part: manifest choice, wasm layer selection and its errors, label keys."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from wasmvisor.engines.catalog import COMPONENT_LAYER, MODULE_LAYER, SPIN_LAYER, WASMTIME, EngineInfo
from wasmvisor.errors import InvalidArgument
from wasmvisor.supervisor.containerd import oci_wasm
from wasmvisor.supervisor.containerd.oci_wasm import Descriptor

TAR = "application/vnd.oci.image.layer.v1.tar"
WASM_CONFIG = {"architecture": "wasm", "os": "wasip1"}


def desc(media_type: str, n: int) -> Descriptor:
    return Descriptor(media_type, f"sha256:{n:064x}", 10)


def entry(n: int, os_: str, arch: str) -> dict[str, object]:
    return {"mediaType": oci_wasm.MANIFEST_TYPES[0], "digest": f"sha256:{n:064x}", "size": 1,
            "platform": {"os": os_, "architecture": arch}}


def test_index_picks_the_wasip1_wasm_manifest_before_the_host_one() -> None:
    index = {"manifests": [entry(1, "linux", oci_wasm.host_platform()[1]), entry(2, "wasip1", "wasm")]}
    assert oci_wasm.choose_manifest(index, "image x").digest == f"sha256:{2:064x}"


def test_index_falls_back_to_the_host_platform_then_to_a_single_entry() -> None:
    host = oci_wasm.host_platform()
    assert oci_wasm.choose_manifest({"manifests": [entry(1, "windows", "arm"), entry(3, *host)]}, "x").digest.endswith(
        "3")
    assert oci_wasm.choose_manifest({"manifests": [entry(4, "plan9", "mips")]}, "x").digest.endswith("4")


def test_index_without_a_usable_manifest_names_the_platforms() -> None:
    with pytest.raises(InvalidArgument, match="no manifest for wasip1/wasm"):
        oci_wasm.choose_manifest({"manifests": [entry(1, "plan9", "mips"), entry(2, "plan9", "arm")]}, "image x")
    with pytest.raises(InvalidArgument, match="lists no manifests"):
        oci_wasm.choose_manifest({}, "image x")


def test_manifest_parts_give_config_and_layers() -> None:
    manifest = {"config": {"mediaType": "c", "digest": "sha256:aa", "size": 3},
                "layers": [{"mediaType": MODULE_LAYER, "digest": "sha256:bb", "size": 5}]}
    config, layers = oci_wasm.manifest_parts(manifest, "m")
    assert config == Descriptor("c", "sha256:aa", 3)
    assert layers == [Descriptor(MODULE_LAYER, "sha256:bb", 5)]
    with pytest.raises(InvalidArgument, match="config: not a descriptor"):
        oci_wasm.manifest_parts({"layers": []}, "m")


def test_parse_json_refuses_what_is_not_an_object() -> None:
    assert oci_wasm.parse_json(orjson.dumps({"a": 1}), "doc") == {"a": 1}
    with pytest.raises(InvalidArgument, match="doc: not JSON"):
        oci_wasm.parse_json(b"\0asm", "doc")
    with pytest.raises(InvalidArgument, match="not a JSON object"):
        oci_wasm.parse_json(b"[1]", "doc")


def test_an_ordinary_image_has_no_wasm_layers() -> None:
    linux = {"architecture": "amd64", "os": "linux"}
    assert oci_wasm.wasm_layers(linux, [desc(MODULE_LAYER, 1)], WASMTIME, "img") == []
    assert oci_wasm.wasm_layers(WASM_CONFIG, [desc(TAR, 1)], WASMTIME, "img") == []


def test_wasm_layers_are_the_non_tar_layers_of_a_wasm_image() -> None:
    layers = [desc(TAR, 1), desc(MODULE_LAYER, 2)]
    assert oci_wasm.wasm_layers(WASM_CONFIG, layers, WASMTIME, "img") == [layers[1]]
    component = [desc(COMPONENT_LAYER, 3)]
    assert oci_wasm.wasm_layers(WASM_CONFIG, component, WASMTIME, "img") == component


def test_a_layer_type_the_engine_does_not_run_is_named_with_its_digest() -> None:
    layer = desc("application/vnd.example+wasm", 7)
    with pytest.raises(InvalidArgument) as info:
        oci_wasm.wasm_layers(WASM_CONFIG, [layer], WASMTIME, "docker.io/x/app:1")
    assert str(info.value) == (
        f"image docker.io/x/app:1: layer {layer.digest} has media type 'application/vnd.example+wasm', which "
        f"engine wasmtime does not run (it runs {MODULE_LAYER}, {COMPONENT_LAYER}, {SPIN_LAYER})"
    )


def test_more_wasm_layers_than_the_engine_runs_is_an_error() -> None:
    layers = [desc(MODULE_LAYER, 1), desc(MODULE_LAYER, 2)]
    with pytest.raises(InvalidArgument, match="2 wasm layers .* engine wasmtime runs 1"):
        oci_wasm.wasm_layers(WASM_CONFIG, layers, WASMTIME, "img")
    many = EngineInfo("composer", (MODULE_LAYER,), max_layers=2)
    assert oci_wasm.wasm_layers(WASM_CONFIG, layers, many, "img") == layers


@pytest.mark.parametrize(("config_type", "layer_type"), [
    ("application/vnd.wasm.config.v0+json", MODULE_LAYER),
    ("application/vnd.fermyon.spin.application.v1+config", SPIN_LAYER),
], ids=["cncf-wasm-artifact", "spin"])
def test_wasm_artifacts_are_known_by_their_config_type(config_type: str, layer_type: str) -> None:
    # Spin's image also lists its application's config as a layer: it holds no code and is passed over.
    layers = [desc("application/vnd.fermyon.spin.application.v1+config", 1), desc(layer_type, 2)]
    assert oci_wasm.wasm_layers({}, layers, WASMTIME, "img", config_type) == [layers[1]]


def test_a_wasm_image_with_nothing_to_run_names_the_media_types_found() -> None:
    layers = [desc("application/vnd.fermyon.spin.application.v1+config", 1)]
    with pytest.raises(InvalidArgument) as info:
        oci_wasm.wasm_layers({}, layers, WASMTIME, "docker.io/x/app:1", "application/vnd.wasm.config.v0+json")
    assert str(info.value).startswith(
        "image docker.io/x/app:1: no layer to run: found application/vnd.fermyon.spin.application.v1+config; "
        "engine wasmtime runs tar (rootfs) layers and application/wasm, ")


def test_check_digest_accepts_matching_content_only() -> None:
    data = b"\0asm\x01\0\0\0"
    oci_wasm.check_digest(data, "sha256:" + hashlib.sha256(data).hexdigest(), "layer")
    with pytest.raises(InvalidArgument, match="does not match its digest"):
        oci_wasm.check_digest(data + b"x", "sha256:" + hashlib.sha256(data).hexdigest(), "layer")
    with pytest.raises(InvalidArgument, match="only sha256"):
        oci_wasm.check_digest(data, "sha512:00", "layer")


def test_label_keys_name_the_engine_and_its_build() -> None:
    fp = "wasmtime-py wasmtime-50.0.1.dist-info lib=1 x86_64 defaults"
    fid = oci_wasm.fingerprint_id(fp)
    assert len(fid) == 16 and fid != oci_wasm.fingerprint_id(fp + "x")
    assert oci_wasm.precompiled_label("wasmtime", fp) == f"wasmvisor.io/precompiled/wasmtime/{fid}"
    # containerd's GC follows labels with this prefix from the layer (and manifest) to the blob.
    assert oci_wasm.gc_ref_label("wasmtime", fp).startswith("containerd.io/gc.ref.content.")
    assert " " not in oci_wasm.gc_ref_label("wasmtime", fp)


def test_only_a_blob_labelled_as_ours_for_this_layer_and_build_counts() -> None:
    fp = "fp-1"
    layer, other = ("sha256:" + hashlib.sha256(x).hexdigest() for x in (b"one", b"two"))
    labels = oci_wasm.compiled_blob_labels(layer, "wasmtime", fp)
    assert oci_wasm.is_our_compiled_blob(labels, layer, "wasmtime", fp)
    assert not oci_wasm.is_our_compiled_blob(labels, layer, "wasmtime", "fp-2")
    assert not oci_wasm.is_our_compiled_blob(labels, other, "wasmtime", fp)
    assert not oci_wasm.is_our_compiled_blob(labels, layer, "wamr", fp)
    assert not oci_wasm.is_our_compiled_blob({}, layer, "wasmtime", fp)
    both = {**labels, **oci_wasm.compiled_blob_labels(other, "wasmtime", fp)}
    assert oci_wasm.is_our_compiled_blob(both, layer, "wasmtime", fp)  # two layers, same compiled bytes
    assert oci_wasm.is_our_compiled_blob(both, other, "wasmtime", fp)
