"""wasmvisor.image: OCI layout tarballs built in code (no containerd needed)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from wasmvisor.image import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    MEDIA_TYPE_LAYER_TAR,
    MEDIA_TYPE_WASM_LAYER,
    FileSpec,
    Layer,
    build_busybox_image,
    build_oci_tar,
    files_from_dir,
    layer_tar,
    ref_tag,
)

REF = "docker.io/library/hello:1.0"


class Layout:
    """An OCI layout tarball opened for reading."""

    def __init__(self, path: Path) -> None:
        with tarfile.open(path) as tar:
            self.members = {m.name: m for m in tar.getmembers()}
            self.blobs = {
                m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile()
            }

    def json(self, name: str) -> Any:
        return json.loads(self.blobs[name])

    def blob(self, digest: str) -> bytes:
        algo, hexdigest = digest.split(":")
        return self.blobs[f"blobs/{algo}/{hexdigest}"]

    @property
    def manifest(self) -> Any:
        return json.loads(self.blob(self.json("index.json")["manifests"][0]["digest"]))

    @property
    def config(self) -> Any:
        return json.loads(self.blob(self.manifest["config"]["digest"]))

    def layer(self, index: int = 0) -> tarfile.TarFile:
        return tarfile.open(fileobj=io.BytesIO(self.blob(self.manifest["layers"][index]["digest"])))


def build(tmp_path: Path, files: dict[str, Any] | None = None, **kwargs: Any) -> tuple[str, Layout]:
    out = tmp_path / "image.tar"
    digest = build_oci_tar(out, REF, files if files is not None else {"/hello.wasm": b"\0asm"}, **kwargs)
    return digest, Layout(out)


def test_layout_has_oci_layout_index_and_blobs_named_by_digest(tmp_path: Path) -> None:
    digest, layout = build(tmp_path, entrypoint=["/hello.wasm"])

    assert layout.json("oci-layout") == {"imageLayoutVersion": "1.0.0"}
    for name, data in layout.blobs.items():
        if name.startswith("blobs/sha256/"):
            assert name.rsplit("/", 1)[1] == hashlib.sha256(data).hexdigest()
    entry = layout.json("index.json")["manifests"][0]
    assert entry["digest"] == digest
    assert entry["size"] == len(layout.blob(digest))


def test_index_names_the_image_for_containerd_and_by_tag(tmp_path: Path) -> None:
    _, layout = build(tmp_path)

    annotations = layout.json("index.json")["manifests"][0]["annotations"]
    assert annotations == {ANNOTATION_CONTAINERD_NAME: REF, ANNOTATION_REF_NAME: "1.0"}


def test_config_holds_platform_and_runtime_settings(tmp_path: Path) -> None:
    _, layout = build(
        tmp_path,
        entrypoint=["/hello.wasm#greet"],
        cmd=["a"],
        env={"K": "V"},
        workdir="/app",
        labels={"l": "v"},
    )

    config = layout.config
    assert (config["os"], config["architecture"]) == ("wasip1", "wasm")
    assert config["config"] == {
        "Entrypoint": ["/hello.wasm#greet"],
        "Cmd": ["a"],
        "Env": ["K=V"],
        "WorkingDir": "/app",
        "Labels": {"l": "v"},
    }
    layer_digests = [layer["digest"] for layer in layout.manifest["layers"]]
    assert config["rootfs"] == {"type": "layers", "diff_ids": layer_digests}
    assert layout.json("index.json")["manifests"][0]["platform"] == {"os": "wasip1", "architecture": "wasm"}


def test_layer_holds_files_with_parents_modes_and_symlinks(tmp_path: Path) -> None:
    _, layout = build(
        tmp_path,
        {
            "/app/bin/run.wasm": FileSpec.executable(b"\0asm"),
            "etc/conf.txt": b"x=1\n",
            "/app/link": FileSpec.link("bin/run.wasm"),
            "/empty": FileSpec.dir(0o700),
        },
    )

    assert layout.manifest["layers"][0]["mediaType"] == MEDIA_TYPE_LAYER_TAR
    with layout.layer() as layer:
        members = {m.name.rstrip("/"): m for m in layer.getmembers()}
        assert sorted(members) == ["app", "app/bin", "app/bin/run.wasm", "app/link", "empty", "etc", "etc/conf.txt"]
        assert members["app/bin"].isdir() and members["app/bin"].mode == 0o755
        assert members["app/bin/run.wasm"].mode == 0o755
        assert members["etc/conf.txt"].mode == 0o644
        assert layer.extractfile("etc/conf.txt").read() == b"x=1\n"  # type: ignore[union-attr]
        assert members["app/link"].issym() and members["app/link"].linkname == "bin/run.wasm"
        assert members["empty"].isdir() and members["empty"].mode == 0o700
        assert {(m.mtime, m.uid, m.gid) for m in members.values()} == {(0, 0, 0)}


def test_same_input_gives_same_digest_and_bytes(tmp_path: Path) -> None:
    files = {"/b.wasm": b"\0asm", "/a/c.txt": b"c"}
    first = build_oci_tar(tmp_path / "1.tar", REF, files, entrypoint=["/b.wasm"])
    second = build_oci_tar(tmp_path / "2.tar", REF, dict(reversed(files.items())), entrypoint=["/b.wasm"])

    assert first == second
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()
    assert build_oci_tar(tmp_path / "3.tar", REF, files, entrypoint=["/a.wasm"]) != first


@pytest.mark.parametrize("bad", ["/", "../x", "a/../../x"])
def test_paths_outside_the_image_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="image path"):
        layer_tar({bad: b"x"})


def test_a_file_cannot_be_a_parent_directory() -> None:
    with pytest.raises(ValueError, match="not a directory"):
        layer_tar({"/a": b"file", "/a/b": b"child"})


def test_extra_layers_follow_the_file_layer(tmp_path: Path) -> None:
    wasm = Layer.wasm(b"\0asm\x01\0\0\0")
    _, layout = build(tmp_path, {"/x": b"x"}, extra_layers=[wasm])

    layers = layout.manifest["layers"]
    assert [layer["mediaType"] for layer in layers] == [MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_WASM_LAYER]
    assert layout.blob(layers[1]["digest"]) == b"\0asm\x01\0\0\0"
    # containerd compares diff_ids with the layers it unpacks: the wasm layer is not one of them.
    assert layout.config["rootfs"]["diff_ids"] == [layers[0]["digest"]]


def test_only_extra_layers_when_no_files(tmp_path: Path) -> None:
    _, layout = build(tmp_path, {}, extra_layers=[Layer.wasm(b"\0asm")])

    assert [layer["mediaType"] for layer in layout.manifest["layers"]] == [MEDIA_TYPE_WASM_LAYER]


@pytest.mark.parametrize(
    ("ref", "tag"),
    [
        ("docker.io/library/x:1.0", "1.0"),
        ("x", "latest"),
        ("localhost:5000/x", "latest"),
        ("localhost:5000/x:dev", "dev"),
        ("x:v@sha256:" + "0" * 64, "v"),
    ],
)
def test_ref_tag(ref: str, tag: str) -> None:
    assert ref_tag(ref) == tag


def test_files_from_dir_keeps_modes_and_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "app.wasm").write_bytes(b"\0asm")
    (root / "bin" / "app.wasm").chmod(0o755)
    (root / "current").symlink_to("bin/app.wasm")

    files = files_from_dir(root)

    assert files["bin/app.wasm"] == FileSpec(data=b"\0asm", mode=0o755)
    assert files["current"].symlink == "bin/app.wasm"
    assert files["bin"].directory


def test_busybox_image_is_native_with_applet_links(tmp_path: Path) -> None:
    fake = tmp_path / "busybox"
    fake.write_bytes(b"\x7fELF fake")
    out = tmp_path / "bb.tar"

    build_busybox_image(out, "docker.io/library/bb:latest", busybox=fake, applets=("sh", "echo"))

    layout = Layout(out)
    assert (layout.config["os"], layout.config["config"]["Cmd"]) == ("linux", ["/bin/sh"])
    with layout.layer() as layer:
        members = {m.name: m for m in layer.getmembers()}
        assert members["bin/busybox"].mode == 0o755
        assert members["bin/sh"].linkname == members["bin/echo"].linkname == "busybox"
