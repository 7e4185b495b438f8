"""Build OCI image layout tarballs in code, for `ctr images import` (no registry needed).

`build_oci_tar` writes `oci-layout`, `index.json` and `blobs/sha256/...` (layers, config, manifest) into
one uncompressed tar. The output is deterministic: fixed mtimes, owners and ordering, so the same
input always gives the same manifest digest. Layers are a list of `Layer` values so that other kinds
(OCI Wasm layers, media type `application/wasm`) can sit next to the filesystem layer.

Import with `ctr -n NS images import --all-platforms FILE`: a wasm image (os `wasip1`, architecture
`wasm`) matches no host platform and is skipped without `--all-platforms` ("image might be filtered out").
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import posixpath
import stat
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmvisor.linux.files import write_atomic

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_WASM_LAYER = "application/wasm"

ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

FIXED_MTIME = 0
"""Every tar member (in layers and in the layout tarball) gets this mtime, for reproducible digests."""

BUSYBOX_APPLETS = ("sh", "true", "false", "sleep", "cat", "echo", "env", "pwd", "ls")


@dataclass(frozen=True)
class FileSpec:
    """One entry of a filesystem layer: a regular file (default), a directory or a symlink."""

    data: bytes = b""
    mode: int = 0o644
    symlink: str | None = None
    """When set, the entry is a symlink to this target and `data` is ignored."""
    directory: bool = False

    @classmethod
    def file(cls, data: bytes, mode: int = 0o644) -> FileSpec:
        return cls(data=data, mode=mode)

    @classmethod
    def executable(cls, data: bytes) -> FileSpec:
        return cls(data=data, mode=0o755)

    @classmethod
    def link(cls, target: str) -> FileSpec:
        return cls(symlink=target, mode=0o777)

    @classmethod
    def dir(cls, mode: int = 0o755) -> FileSpec:
        return cls(directory=True, mode=mode)


@dataclass(frozen=True)
class Layer:
    """One image layer: its media type, its bytes, and its diff id (digest of the uncompressed
    content; for uncompressed layers the same as the blob digest)."""

    media_type: str
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def diff_id(self) -> str:
        return self.digest

    @property
    def is_tar(self) -> bool:
        """A layer containerd unpacks into the rootfs (not an OCI Wasm layer)."""
        return self.media_type.startswith("application/vnd.oci.image.layer.")

    @classmethod
    def from_files(cls, files: Mapping[str, bytes | FileSpec]) -> Layer:
        return cls(MEDIA_TYPE_LAYER_TAR, layer_tar(files))

    @classmethod
    def wasm(cls, module: bytes) -> Layer:
        """An OCI Wasm layer (the module's bytes as the blob). Runs only on containerd >= 1.6.25/1.7.7."""
        return cls(MEDIA_TYPE_WASM_LAYER, module)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _normalize(path: str) -> str:
    """`/a/b`, `a/b/` and `./a//b` all name `a/b`; `..` and the root itself are rejected."""
    if ".." in path.split("/"):
        raise ValueError(f"image path {path!r}: must not contain '..'")
    norm = posixpath.normpath("/" + path).lstrip("/")
    if not norm or norm == ".":
        raise ValueError(f"image path {path!r}: names the root, not a file")
    return norm


def _as_spec(value: bytes | FileSpec) -> FileSpec:
    if isinstance(value, FileSpec):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return FileSpec(data=bytes(value))
    raise TypeError(f"file content must be bytes or FileSpec, not {type(value).__name__}")


def _tar_info(name: str, spec: FileSpec) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = stat.S_IMODE(spec.mode)
    if spec.symlink is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = spec.symlink
    elif spec.directory:
        info.type = tarfile.DIRTYPE
    else:
        info.type = tarfile.REGTYPE
        info.size = len(spec.data)
    return info


def layer_tar(files: Mapping[str, bytes | FileSpec]) -> bytes:
    """An uncompressed tar holding `files` (keys are paths inside the image), parents created."""
    entries: dict[str, FileSpec] = {}
    for raw_path, value in files.items():
        name = _normalize(raw_path)
        if name in entries and not entries[name].directory:
            raise ValueError(f"image path {raw_path!r}: given twice")
        entries[name] = _as_spec(value)
    for name in list(entries):
        parent = posixpath.dirname(name)
        while parent:
            existing = entries.get(parent)
            if existing is None:
                entries[parent] = FileSpec.dir()
            elif not existing.directory:
                raise ValueError(f"image path {name!r}: parent {parent!r} is not a directory")
            parent = posixpath.dirname(parent)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # Sorted names put every directory before its content.
        for name in sorted(entries):
            spec = entries[name]
            info = _tar_info(name + "/" if spec.directory else name, spec)
            tar.addfile(info, io.BytesIO(spec.data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def files_from_dir(root: str | os.PathLike[str]) -> dict[str, FileSpec]:
    """The files, directories and symlinks under `root`, as a `files` mapping (keeps modes)."""
    base = Path(root)
    out: dict[str, FileSpec] = {}
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base).as_posix()
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = FileSpec.link(os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = FileSpec.dir(stat.S_IMODE(st.st_mode))
        elif stat.S_ISREG(st.st_mode):
            out[rel] = FileSpec.file(path.read_bytes(), stat.S_IMODE(st.st_mode))
        else:
            raise ValueError(f"{path}: only files, directories and symlinks go into an image")
    return out


def ref_tag(ref: str) -> str:
    """The tag of an image reference: `docker.io/library/x:1.0` -> `1.0`; no tag -> `latest`."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


def image_config(
    layers: Sequence[Layer],
    *,
    entrypoint: Sequence[str] | None,
    cmd: Sequence[str] | None,
    env: Sequence[str] | Mapping[str, str] | None,
    workdir: str | None,
    os: str,
    architecture: str,
    labels: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The OCI image config document (without a `created` time, to stay deterministic)."""
    runtime: dict[str, Any] = {}
    if entrypoint is not None:
        runtime["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        runtime["Cmd"] = list(cmd)
    if env is not None:
        runtime["Env"] = [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else list(env)
    if workdir:
        runtime["WorkingDir"] = workdir
    if labels:
        runtime["Labels"] = dict(labels)
    return {
        "architecture": architecture,
        "os": os,
        "config": runtime,
        # Only the layers containerd unpacks: it checks diff_ids against the manifest's tar layers
        # ("mismatched image rootfs and manifest layers" on 1.7 when a wasm layer is listed).
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers if layer.is_tar]},
    }


def build_oci_tar(
    out_path: str | os.PathLike[str],
    ref: str,
    files: Mapping[str, bytes | FileSpec],
    *,
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Sequence[str] | Mapping[str, str] | None = None,
    workdir: str | None = None,
    os: str = "wasip1",
    architecture: str = "wasm",
    labels: Mapping[str, str] | None = None,
    extra_layers: Sequence[Layer] = (),
    config_document: Mapping[str, Any] | None = None,
    config_media_type: str = MEDIA_TYPE_CONFIG,
) -> str:
    """Write an OCI image layout tarball for image `ref` to `out_path`; return the manifest digest.

    `files` becomes the first (tar) layer; `extra_layers` follow it. An empty `files` mapping with
    `extra_layers` gives an image of only those layers. `config_document` and `config_media_type`
    replace the OCI image config (an artifact's config, such as the CNCF wasm artifact's).
    """
    layers = ([Layer.from_files(files)] if files or not extra_layers else []) + list(extra_layers)
    config = _json_bytes(
        config_document if config_document is not None else image_config(
            layers,
            entrypoint=entrypoint,
            cmd=cmd,
            env=env,
            workdir=workdir,
            os=os,
            architecture=architecture,
            labels=labels,
        )
    )
    manifest = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": _descriptor(config_media_type, config),
            "layers": [
                _descriptor(
                    layer.media_type,
                    layer.data,
                    **({"annotations": dict(layer.annotations)} if layer.annotations else {}),
                )
                for layer in layers
            ],
        }
    )
    index = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [
                _descriptor(
                    MEDIA_TYPE_MANIFEST,
                    manifest,
                    platform={"os": os, "architecture": architecture},
                    annotations={ANNOTATION_CONTAINERD_NAME: ref, ANNOTATION_REF_NAME: ref_tag(ref)},
                )
            ],
        }
    )
    blobs: dict[str, bytes] = {}
    for blob in (*(layer.data for layer in layers), config, manifest):
        blobs[sha256_digest(blob).removeprefix("sha256:")] = blob
    members: list[tuple[str, bytes | None]] = [
        ("blobs/", None),
        ("blobs/sha256/", None),
        *((f"blobs/sha256/{hexdigest}", blobs[hexdigest]) for hexdigest in sorted(blobs)),
        ("index.json", index),
        ("oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"})),
    ]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            spec = FileSpec.dir() if data is None else FileSpec.file(data)
            tar.addfile(_tar_info(name, spec), None if data is None else io.BytesIO(data))
    write_atomic(out_path, archive.getvalue())
    return sha256_digest(manifest)


def build_busybox_image(
    out_path: str | os.PathLike[str],
    ref: str,
    *,
    busybox: str | os.PathLike[str] = "/bin/busybox",
    cmd: Sequence[str] = ("/bin/sh",),
    extra_files: Mapping[str, bytes | FileSpec] | None = None,
    applets: Sequence[str] = BUSYBOX_APPLETS,
) -> str:
    """A native linux image (host architecture) from the host's static busybox (`busybox-static`):
    /bin/busybox with symlinks for `applets`, for comparisons with runc. Returns the manifest digest."""
    binary = Path(busybox).read_bytes()
    files: dict[str, bytes | FileSpec] = {"/bin/busybox": FileSpec.executable(binary)}
    for applet in applets:
        files[f"/bin/{applet}"] = FileSpec.link("busybox")
    files.update(extra_files or {})
    return build_oci_tar(
        out_path,
        ref,
        files,
        cmd=cmd,
        env=["PATH=/bin"],
        os="linux",
        architecture=host_architecture(),
    )


def host_architecture() -> str:
    """This machine's architecture as OCI names it (x86_64 -> amd64, aarch64 -> arm64)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
