"""Packaging: `python -m build` makes an sdist that carries the .proto files and relay.c, and from it a
wheel; that wheel installed into a fresh venv (no repository) passes `pip check`, gives both console
scripts, and its shim runs the demo's hello through a private containerd.

The wheel is built as users build it, sdist first and the wheel from the unpacked sdist, without build
isolation (the build dependencies are in the test venv) and into a temporary folder; the fresh venv gets
its dependencies from pip's cache (or PyPI). Runs once for the first containerd line selected.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import SESSION_TOKEN, ImageTarball
from tests.e2e.containerd import private_containerd
from tests.e2e.versions import binaries_for, selected_lines

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("containerd-shim-wasmvisor-v1", "containerd-shim-wasmvisor-v1-python", "wasmvisor")


@dataclass(frozen=True)
class Installed:
    sdist: Path
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def _run(*argv: str | os.PathLike[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root")
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, REPO)
    (sdist,) = dist.glob("wasmvisor-*.tar.gz")
    (wheel,) = dist.glob("wasmvisor-*.whl")
    venv = tmp_path_factory.mktemp("node") / "venv"
    # The interpreter the test venv was made from: a fresh venv of the machine's Python, as on a node.
    _run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv)
    _run(venv / "bin" / "pip", "install", "-q", wheel)
    yield Installed(sdist, wheel, venv)


def test_the_sdist_carries_the_proto_files_and_the_relay_source(installed: Installed) -> None:
    with tarfile.open(installed.sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"setup.py", "pyproject.toml", "wasmvisor/worker/relay.c", "wasmvisor/worker/runner.c",
            "wasmvisor/supervisor/shim/front.c",
            "wasmvisor/proto/containerd/task/v2/shim.proto",
            "wasmvisor/proto/containerd/types/introspection.proto"} <= names
    assert not any("/_bin/" in name or name.startswith("tests/") for name in names)


def test_the_wheel_built_from_the_sdist_carries_the_compiled_relay_and_runner(installed: Installed) -> None:
    assert installed.wheel.name.startswith("wasmvisor-0.1.0-py3-none-linux_")
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
    assert {"wasmvisor/worker/_bin/wasmvisor-relay", "wasmvisor/worker/relay.c",
            "wasmvisor/worker/_bin/wasmvisor-runner", "wasmvisor/worker/runner.c"} <= names


def test_the_wheel_installs_the_compiled_front_as_the_shim_binary(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        front = whl.read("wasmvisor-0.1.0.data/scripts/containerd-shim-wasmvisor-v1")
        entry_points = next(n for n in whl.namelist() if n.endswith(".dist-info/entry_points.txt"))
        scripts = whl.read(entry_points).decode()
    assert front.startswith(b"\x7fELF")
    assert "containerd-shim-wasmvisor-v1-python = wasmvisor.supervisor.shim.main:main" in scripts
    assert "containerd-shim-wasmvisor-v1 =" not in scripts  # pip must not write a script over the front
    assert (installed.bin / "containerd-shim-wasmvisor-v1").read_bytes() == front
    # The front finds the Python shim beside it and the package in the venv: what it names the template by.
    found = _run(installed.bin / "containerd-shim-wasmvisor-v1", "--front-check", "python-command").stdout.split()
    assert Path(found[0]).parent == installed.bin and Path(found[0]).name.startswith("python")
    assert found[1] == str(installed.bin / "containerd-shim-wasmvisor-v1-python")
    assert Path(found[2], "supervisor", "shim", "front.c").is_file()


def test_the_installed_wheel_passes_pip_check_and_gives_both_scripts(installed: Installed) -> None:
    _run(installed.bin / "pip", "check")
    for script in SCRIPTS:
        assert os.access(installed.bin / script, os.X_OK), script
    version = _run(installed.bin / "containerd-shim-wasmvisor-v1", "-v")
    assert version.stdout.startswith("containerd-shim-wasmvisor-v1:\n  Version: 0.1.0\n")
    assert "Version: 0.1.0" in _run(installed.bin / "wasmvisor", "version").stdout


def test_the_installed_shim_runs_the_demos_hello(installed: Installed, images: dict[str, ImageTarball]) -> None:
    line = selected_lines()[0]
    with private_containerd(shim_dirs=[installed.bin], binaries=binaries_for(line), line=line) as containerd:
        ctr = containerd.ctr(f"wv{SESSION_TOKEN}-wheel")
        try:
            ctr.import_image(images["hello"].tar)
            result = ctr.run_container(images["hello"].ref, "wheel-hello")
        finally:
            ctr.remove_all()
        assert (result.returncode, result.stdout, result.stderr) == (0, "hello from wasmvisor\n", ""), \
            containerd.log_tail()
