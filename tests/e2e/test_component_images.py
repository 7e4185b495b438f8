"""The image layouts tools push for components, built by `wasmvisor image build`, run through ctr:
runwasi's component layer, Spin's content layer and a plain image whose entrypoint is a component file.
A wasm image with nothing to run is refused at Create naming the media types it has.

Layer layouts need containerd >= 1.6.25 / 1.7.7 / 2.0: on 1.6 only the rootfs layout runs. The CNCF wasm
artifact is not here: ctr 2.1 refuses its config before any shim sees it (`ctr: unknown image
config media type application/vnd.wasm.config.v0+json`); its layers are recognised (unit tests).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO
from tests.e2e.ctr import Ctr
from tests.guests.components import build_component
from wasmvisor.image import Layer, build_oci_tar


@pytest.mark.parametrize("layout", ["rootfs", "component-layer", "spin"])
def test_image_build_layout_of_a_component_runs(ctr: Ctr, tmp_path: Path, container_id: str, layout: str) -> None:
    if layout != "rootfs" and ctr.containerd.line == "1.6":
        pytest.skip("containerd 1.6.20 cannot unpack non-tar layers (needs >= 1.6.25, 1.7.7 or 2.0)")
    wasm = tmp_path / "hello.wasm"
    wasm.write_bytes(build_component("hello", REPO / "_work" / "guests").read_bytes())
    ref = f"docker.io/wasmvisor-test/component-{layout}:1"
    out = tmp_path / "image.tar"
    proc = subprocess.run([sys.executable, "-m", "wasmvisor.cli", "image", "build", "--wasm", str(wasm), "--name",
                           ref, "--layout", layout, "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ctr.import_image(out)

    result = ctr.run_container(ref, container_id)

    assert (result.returncode, result.stdout) == (0, "hello from wasmvisor\n"), result.output


def test_a_wasm_image_with_only_metadata_layers_is_refused_naming_them(ctr: Ctr, tmp_path: Path,
                                                                     container_id: str) -> None:
    if ctr.containerd.line == "1.6":
        pytest.skip("containerd 1.6.20 cannot unpack non-tar layers (needs >= 1.6.25, 1.7.7 or 2.0)")
    ref = "docker.io/wasmvisor-test/component-data-only:1"
    tar = tmp_path / "image.tar"
    build_oci_tar(tar, ref, {}, extra_layers=[Layer("application/vnd.fermyon.spin.application.v1+config", b"{}")],
                  entrypoint=["/app.wasm"], os="wasip2")
    ctr.import_image(tar)

    result = ctr.run_container(ref, container_id)

    assert result.returncode != 0
    assert "no layer to run: found application/vnd.fermyon.spin.application.v1+config" in result.stderr, result.stderr
