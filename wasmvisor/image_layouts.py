"""The image layouts that carry one wasm program, as tools push them today, built by
`wasmvisor image build` (and `build_wasm_image` in code):

- `rootfs`: a plain image whose entrypoint is the file: one tar layer holding `/<name>`;
- `wasm-layer`: an OCI Wasm image (runwasi's layout for modules): an `application/wasm` layer;
- `component-layer`: runwasi's layout for components: an
  `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm` layer;
- `wasm-artifact`: the CNCF wasm OCI artifact as `wkg oci push` writes it: config
  `application/vnd.wasm.config.v0+json`, an `application/wasm` layer;
- `spin`: Spin's single-layer image: an `application/vnd.wasm.content.layer.v1+wasm` layer.

A component gets platform `wasip2/wasm`, a core module `wasip1/wasm`. The entrypoint is `/<name>` in
each (a CNCF artifact's config has no place for one: the image's index and config carry it here as
extra fields, which containerd reads as for any image; an artifact pushed by another tool needs the
module named on the command line, `ctr run IMAGE ID /app.wasm`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from wasmvisor.image import Layer, build_oci_tar, sha256_digest

WASM_LAYER = "application/wasm"
COMPONENT_LAYER = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
SPIN_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
WASM_ARTIFACT_CONFIG = "application/vnd.wasm.config.v0+json"

LAYOUTS = ("rootfs", "wasm-layer", "component-layer", "wasm-artifact", "spin")
_LAYER_TYPES = {"wasm-layer": WASM_LAYER, "component-layer": COMPONENT_LAYER, "wasm-artifact": WASM_LAYER,
                "spin": SPIN_LAYER}


def is_component(wasm: bytes) -> bool:
    """Whether `wasm` is a component binary (layer 0x0001, version 0x000d), not a core module."""
    return wasm[4:8] == b"\x0d\x00\x01\x00"


def build_wasm_image(
    out_path: str | os.PathLike[str],
    ref: str,
    module: bytes,
    *,
    layout: str = "rootfs",
    module_name: str = "app.wasm",
    env: Sequence[str] | None = None,
) -> str:
    """An image that runs one wasm module or component in `layout` (module docstring), as an OCI
    layout tarball; returns the manifest digest."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: want one of {', '.join(LAYOUTS)}")
    entry = "/" + module_name.lstrip("/")
    wasi = "wasip2" if is_component(module) else "wasip1"
    if layout == "rootfs":
        return build_oci_tar(out_path, ref, {entry: module}, entrypoint=[entry], env=env, os=wasi)
    layer = Layer(_LAYER_TYPES[layout], module)
    if layout != "wasm-artifact":
        return build_oci_tar(out_path, ref, {}, entrypoint=[entry], env=env, os=wasi, extra_layers=[layer])
    config = {
        "architecture": "wasm",
        "os": wasi,
        "layerDigests": [sha256_digest(module)],
        # Not part of the artifact's schema; read by containerd as the image's runtime config.
        "config": {"Entrypoint": [entry], **({"Env": list(env)} if env else {})},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return build_oci_tar(out_path, ref, {}, os=wasi, extra_layers=[layer], config_document=config,
                         config_media_type=WASM_ARTIFACT_CONFIG)
