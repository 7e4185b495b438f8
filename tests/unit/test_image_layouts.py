"""Each image layout of `wasmvisor image build`: its layers' media types, its config and platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_image import Layout
from wasmvisor.image_layouts import LAYOUTS, build_wasm_image

MODULE = b"\0asm\x01\0\0\0"
COMPONENT = b"\0asm\x0d\0\x01\0"


@pytest.mark.parametrize(("layout", "layer_type", "config_type"), [
    ("wasm-layer", "application/wasm", "application/vnd.oci.image.config.v1+json"),
    ("component-layer", "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
     "application/vnd.oci.image.config.v1+json"),
    ("wasm-artifact", "application/wasm", "application/vnd.wasm.config.v0+json"),
    ("spin", "application/vnd.wasm.content.layer.v1+wasm", "application/vnd.oci.image.config.v1+json"),
])
def test_layer_layouts_hold_the_component_as_their_one_layer(tmp_path: Path, layout: str, layer_type: str,
                                                             config_type: str) -> None:
    build_wasm_image(tmp_path / "x.tar", "docker.io/me/app:1", COMPONENT, layout=layout)
    image = Layout(tmp_path / "x.tar")

    assert [x["mediaType"] for x in image.manifest["layers"]] == [layer_type]
    assert image.blob(image.manifest["layers"][0]["digest"]) == COMPONENT
    assert image.manifest["config"]["mediaType"] == config_type
    assert (image.config["os"], image.config["architecture"]) == ("wasip2", "wasm")
    assert image.config["config"]["Entrypoint"] == ["/app.wasm"]


def test_the_wasm_artifact_config_lists_its_layer_digests(tmp_path: Path) -> None:
    build_wasm_image(tmp_path / "x.tar", "docker.io/me/app:1", MODULE, layout="wasm-artifact")
    image = Layout(tmp_path / "x.tar")

    assert image.config["layerDigests"] == [image.manifest["layers"][0]["digest"]]
    assert image.config["os"] == "wasip1"


def test_rootfs_layout_is_a_plain_image_with_the_file(tmp_path: Path) -> None:
    build_wasm_image(tmp_path / "x.tar", "docker.io/me/app:1", COMPONENT, layout="rootfs", module_name="c.wasm")
    image = Layout(tmp_path / "x.tar")

    assert image.manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert image.layer().extractfile("c.wasm").read() == COMPONENT  # type: ignore[union-attr]
    assert image.config["config"]["Entrypoint"] == ["/c.wasm"]


def test_an_unknown_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="want one of " + ", ".join(LAYOUTS)):
        build_wasm_image(tmp_path / "x.tar", "docker.io/me/app:1", MODULE, layout="zip")
