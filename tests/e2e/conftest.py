"""Fixtures for end-to-end tests: one private containerd per session, guest programs and images built
once per session, one containerd namespace per test module, a fresh container id per test.

The session fixture `containerd` is parametrized over the containerd lines that WASMVISOR_CONTAINERD
selects (1.6, 1.7, 2.1 or all; tests/e2e/versions.py), so every e2e test runs once per line (test ids end
in [1.6], [1.7], [2.1]). Set WASMVISOR_CONTAINERD_BIN_DIR to test another containerd build instead and
WASMVISOR_KEEP_CONTAINERD=1 to keep the private containerd's base dir (config, log) after the run.

The CRI tests (test_cri_*.py) use `cri` instead: a second private containerd per line, with CRI on
(tests/cri/node.py), shared by all of them, and `cri_image` to import the session's images into it.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cri.node import CriNode, cri_node
from tests.e2e.containerd import PrivateContainerd, private_containerd
from tests.e2e.ctr import Ctr
from tests.e2e.versions import binaries_for, selected_lines
from tests.guests.build import build_all
from wasmvisor.image import FileSpec, build_busybox_image, build_oci_tar

REPO = Path(__file__).resolve().parents[2]
SHIM_BINARY = "containerd-shim-wasmvisor-v1"
SESSION_TOKEN = secrets.token_hex(3)
"""Part of every namespace name, so that leftovers of one run can never be confused with another's."""


def shim_dir() -> Path:
    """The folder holding containerd-shim-wasmvisor-v1: the running venv's scripts, else <repo>/.venv/bin."""
    scripts = Path(sysconfig.get_path("scripts"))
    if (scripts / SHIM_BINARY).exists():
        return scripts
    fallback = REPO / ".venv" / "bin"
    return fallback if (fallback / SHIM_BINARY).exists() else Path(sys.executable).parent


@pytest.fixture(scope="session", params=selected_lines())
def containerd(request: pytest.FixtureRequest) -> Iterator[PrivateContainerd]:
    """A private containerd of one release line for the whole session (log at `.log_path`; shim log
    lines land there). pytest groups the tests by line, so one instance runs at a time."""
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root: they start a private containerd, which mounts and runs shims")
    keep = os.environ.get("WASMVISOR_KEEP_CONTAINERD") == "1"
    line = request.param
    with private_containerd(shim_dirs=[shim_dir()], binaries=binaries_for(line), keep=keep, line=line) as instance:
        yield instance


@pytest.fixture(scope="session", params=selected_lines())
def cri(request: pytest.FixtureRequest) -> Iterator[CriNode]:
    """A private containerd with CRI on, of one release line, shared by the session's CRI tests
    (tests/cri/node.py): handlers `wasmvisor` and `runc`, the default sandboxer, a pause image, CNI.
    Its kubelet-like client is `cri.client`."""
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root: they start a private containerd, which mounts and runs shims")
    keep = os.environ.get("WASMVISOR_KEEP_CONTAINERD") == "1"
    line = request.param
    with cri_node(binaries_for(line), shim_dirs=[shim_dir()], line=line, keep=keep) as node:
        yield node


@pytest.fixture(scope="session")
def cri_image(cri: CriNode, images: dict[str, ImageTarball]) -> Callable[[str], str]:
    """cri_image(name) -> ref, importing the session's tarball into the CRI node's `k8s.io` on first use."""

    def use(name: str) -> str:
        return cri.import_image(images[name].tar, images[name].ref)

    return use


@pytest.fixture(scope="session")
def guest_wasm() -> dict[str, Path]:
    """Every guest of tests/guests, compiled (cached across runs in <repo>/_work/guests)."""
    cache = Path(os.environ.get("WASMVISOR_GUEST_CACHE", REPO / "_work" / "guests"))
    return build_all(cache)


@dataclass(frozen=True)
class ImageTarball:
    """An image tarball built for the session, and the reference it is imported as."""

    ref: str
    tar: Path


IMAGE_FILES = {
    "cat-file": {"/etc/greeting.txt": b"a file from the image\n"},
    "cwd": {"/data.txt": b"root data\n", "/app/data.txt": b"app data\n"},
}


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory, guest_wasm: dict[str, Path]) -> dict[str, ImageTarball]:
    """The session's image tarballs by name (built once, imported per module by `image`)."""
    out = tmp_path_factory.mktemp("images")
    built: dict[str, ImageTarball] = {}

    def wasm_image(name: str, guest: str, entrypoint: list[str] | None = None, **kwargs: object) -> None:
        ref = f"docker.io/wasmvisor-test/{name}:latest"
        files: dict[str, bytes | FileSpec] = {f"/{guest}.wasm": guest_wasm[guest].read_bytes()}
        files.update(IMAGE_FILES.get(name, {}))
        extra = kwargs.pop("files", {})
        assert isinstance(extra, dict)
        files.update(extra)
        tar = out / f"{name}.tar"
        build_oci_tar(tar, ref, files, entrypoint=entrypoint or [f"/{guest}.wasm"], **kwargs)  # type: ignore[arg-type]
        built[name] = ImageTarball(ref, tar)

    wasm_image("hello", "hello")
    wasm_image("exit42", "exit42")
    wasm_image("custom", "custom", ["/custom.wasm#greet"])
    wasm_image("trap", "trap")
    wasm_image("sleep", "sleep")
    wasm_image("imports-missing", "imports_missing")
    wasm_image("echo-args-env", "echo_args_env", env=["WV_IMAGE=from-image"])
    wasm_image("cat-file", "cat_file", cmd=["/etc/greeting.txt"])
    wasm_image("stdin", "stdin_to_stdout")
    wasm_image("cwd", "cwd")
    wasm_image("memtouch", "memtouch")
    # Bad input: the entrypoint is missing, is a shell script, or is not valid wasm.
    wasm_image("missing-module", "hello", ["/missing.wasm"])
    wasm_image("not-wasm", "hello", ["/app.sh"], files={"/app.sh": FileSpec.executable(b"#!/bin/sh\necho hi\n")})
    wasm_image("malformed", "hello", ["/broken.wasm"], files={"/broken.wasm": b"\0asm\x01\0\0\0\x01\xffgarbage"})

    busybox = out / "busybox.tar"
    build_busybox_image(busybox, "docker.io/wasmvisor-test/busybox:latest")
    built["busybox"] = ImageTarball("docker.io/wasmvisor-test/busybox:latest", busybox)
    return built


def _short_name(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "x"


@pytest.fixture(scope="module")
def ctr(request: pytest.FixtureRequest, containerd: PrivateContainerd) -> Iterator[Ctr]:
    """`ctr` bound to a namespace of this test module alone; emptied and removed after the module."""
    module = _short_name(request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"), 30)
    line = _short_name(containerd.line, 6).replace("-", "")
    client = containerd.ctr(f"wv{SESSION_TOKEN}{line}-{module}")
    yield client
    client.remove_all()


@pytest.fixture(scope="module")
def image(ctr: Ctr, images: dict[str, ImageTarball]) -> Callable[[str], str]:
    """image(name) -> ref, importing the session's tarball into this module's namespace on first use."""

    def use(name: str) -> str:
        ctr.import_image(images[name].tar)
        return images[name].ref

    return use


_ids = itertools.count(1)


@pytest.fixture
def new_container_id(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """new_container_id(suffix) -> an id unique in the session, readable in `ps` and in logs."""
    base = _short_name(request.node.name.removeprefix("test_"), 40)

    def make(suffix: str = "") -> str:
        return f"{base}{'-' + suffix if suffix else ''}-{next(_ids)}"

    return make


@pytest.fixture
def container_id(new_container_id: Callable[[str], str]) -> str:
    return new_container_id("")
