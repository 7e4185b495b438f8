"""OCI Wasm images, the pure part: pick the manifest of an index, find the wasm layers of a
manifest and check them against what the engine runs, and the label keys of precompiled layers.

An image is an OCI Wasm image when its config says `architecture: wasm` and some of its layers are
not tar layers (e.g. `application/wasm`): those layers hold the module(s) themselves, and the
rootfs snapshot has none of them (containerd >= 1.6.25 / 1.7.7 skips such layers when it unpacks).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from wasmvisor.engines.catalog import EngineInfo
from wasmvisor.errors import InvalidArgument

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
TAR_LAYER_PREFIXES = ("application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs.")
"""Layers containerd unpacks into the rootfs; every other layer type of a wasm image is a wasm layer."""
WASM_PLATFORMS = (("wasip1", "wasm"), ("wasi", "wasm"), ("wasip2", "wasm"))
WASM_CONFIG_TYPES = ("application/vnd.wasm.config.v0+json", "application/vnd.fermyon.spin.application.v1+config")
"""Config media types of wasm artifacts: the CNCF wasm artifact's (as `wkg` writes it) and Spin's."""
METADATA_LAYER_TYPES = ("application/vnd.fermyon.spin.application.v1+config",)
"""Non-tar layers that describe an application and hold no code: passed over."""

PRECOMPILED_PREFIX = "wasmvisor.io/precompiled/"
"""On an image's wasm layer: `wasmvisor.io/precompiled/<engine>/<fingerprint id>` = compiled digest."""
GC_REF_PREFIX = "containerd.io/gc.ref.content.wasmvisor.precompiled."
"""On the layer and the manifest: keeps the compiled blob exactly as long as they live."""
SOURCE_PREFIX = "wasmvisor.io/precompiled.from."
ENGINE_LABEL = "wasmvisor.io/precompiled.engine"
FINGERPRINT_LABEL = "wasmvisor.io/precompiled.fingerprint"
"""On the compiled blob itself: the engine and engine build (fingerprint id) that made it, and
`wasmvisor.io/precompiled.from.<layer hex[:32]>` = layer digest for each layer it was compiled
from (layers that differ only in custom sections may compile to the same bytes)."""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int = 0

    @property
    def hex(self) -> str:
        return self.digest.partition(":")[2]


def parse_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"{what}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what}: not a JSON object")
    return doc


def descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, dict) or not isinstance(value.get("digest"), str):
        raise InvalidArgument(f"{what}: not a descriptor with a digest: {str(value)[:120]}")
    size = value.get("size", 0)
    return Descriptor(str(value.get("mediaType", "")), value["digest"], size if isinstance(size, int) else 0)


def host_platform() -> tuple[str, str]:
    machine = os.uname().machine
    return "linux", {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def choose_manifest(index: Mapping[str, Any], what: str) -> Descriptor:
    """The manifest of an index for a wasm platform (wasip1/wasm first), else for the host."""
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise InvalidArgument(f"{what}: index lists no manifests")
    wanted = [*WASM_PLATFORMS, host_platform()]
    ranked: list[tuple[int, Descriptor]] = []
    for i, entry in enumerate(entries):
        desc = descriptor(entry, f"{what}: manifests[{i}]")
        platform = entry.get("platform") or {}
        pair = (platform.get("os", ""), platform.get("architecture", ""))
        if pair in wanted:
            ranked.append((wanted.index(pair), desc))
    if ranked:
        return min(ranked, key=lambda r: r[0])[1]
    if len(entries) == 1:
        return descriptor(entries[0], f"{what}: manifests[0]")
    shown = ", ".join(f"{p[0]}/{p[1]}" for p in wanted)
    raise InvalidArgument(f"{what}: index has no manifest for {shown}")


def manifest_parts(manifest: Mapping[str, Any], what: str) -> tuple[Descriptor, list[Descriptor]]:
    """The config descriptor and the layer descriptors of a manifest."""
    config = descriptor(manifest.get("config"), f"{what}: config")
    layers = manifest.get("layers") or []
    if not isinstance(layers, list):
        raise InvalidArgument(f"{what}: layers is not a list")
    return config, [descriptor(x, f"{what}: layers[{i}]") for i, x in enumerate(layers)]


def is_wasm_config(config: Mapping[str, Any], config_type: str = "") -> bool:
    return config.get("architecture") == "wasm" or config_type in WASM_CONFIG_TYPES


def wasm_layers(config: Mapping[str, Any], layers: Sequence[Descriptor], engine: EngineInfo,
                image: str, config_type: str = "") -> list[Descriptor]:
    """The layers the engine runs the module(s) from: none for an image that is not a wasm image
    (config `architecture: wasm`, or a wasm artifact's config type); then every non-tar layer but
    metadata ones, each of a type the engine runs, at most
    `engine.max_layers` of them. Raises InvalidArgument naming the layer, or naming every media type
    found when no layer can run."""
    if not is_wasm_config(config, config_type):
        return []
    found = [layer for layer in layers
             if not layer.media_type.startswith(TAR_LAYER_PREFIXES) and layer.media_type not in METADATA_LAYER_TYPES]
    for layer in found:
        if layer.media_type not in engine.layer_types:
            raise InvalidArgument(
                f"image {image}: layer {layer.digest} has media type {layer.media_type!r}, which engine "
                f"{engine.name} does not run (it runs {', '.join(engine.layer_types)})"
            )
    if len(found) > engine.max_layers:
        raise InvalidArgument(
            f"image {image}: {len(found)} wasm layers ({', '.join(x.digest for x in found)}); engine "
            f"{engine.name} runs {engine.max_layers}"
        )
    if not found and not any(x.media_type.startswith(TAR_LAYER_PREFIXES) for x in layers):
        seen = ", ".join(sorted({x.media_type or "(none)" for x in layers})) or "no layers at all"
        raise InvalidArgument(
            f"image {image}: no layer to run: found {seen}; engine {engine.name} runs tar (rootfs) layers and "
            f"{', '.join(engine.layer_types)}"
        )
    return found


def check_digest(data: bytes, digest: str, what: str) -> None:
    algorithm, _, expected = digest.partition(":")
    if algorithm != "sha256":
        raise InvalidArgument(f"{what}: digest {digest}: only sha256 is supported")
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise InvalidArgument(f"{what}: content does not match its digest {digest} (sha256:{got})")


def fingerprint_id(fingerprint: str) -> str:
    """A short label-safe name for an engine fingerprint (which holds spaces and slashes)."""
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:16]


def precompiled_label(engine: str, fingerprint: str) -> str:
    """The layer's label naming its compiled form for this engine build."""
    return f"{PRECOMPILED_PREFIX}{engine}/{fingerprint_id(fingerprint)}"


def gc_ref_label(engine: str, fingerprint: str) -> str:
    return f"{GC_REF_PREFIX}{engine}.{fingerprint_id(fingerprint)}"


def source_label(layer_digest: str) -> str:
    return SOURCE_PREFIX + layer_digest.partition(":")[2][:32]


def compiled_blob_labels(layer_digest: str, engine: str, fingerprint: str) -> dict[str, str]:
    return {source_label(layer_digest): layer_digest, ENGINE_LABEL: engine,
            FINGERPRINT_LABEL: fingerprint_id(fingerprint)}


def is_our_compiled_blob(labels: Mapping[str, str], layer_digest: str, engine: str, fingerprint: str) -> bool:
    """Whether a blob's own labels say wasmvisor compiled it from this layer with this engine build:
    only such a blob is ever handed to an engine's deserializer."""
    return all(labels.get(k) == v for k, v in compiled_blob_labels(layer_digest, engine, fingerprint).items())
