"""The package's build decides what the shim binary is: the compiled front where a C compiler builds
front.c, else the Python shim's console script under the same name. Run on a copy of the files the
decision reads, with and without a compiler on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FRONT = Path("wasmvisor", "supervisor", "shim", "front.c")


def metadata(tmp_path: Path, path_env: str) -> tuple[str, Path]:
    """entry_points.txt of `setup.py egg_info` run in a copy of the tree, and where the front would be."""
    tree = tmp_path / "tree"
    (tree / FRONT.parent).mkdir(parents=True)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    shutil.copy(REPO / FRONT, tree / FRONT)
    for folder in [tree / "wasmvisor", *(tree / FRONT.parents[i] for i in range(len(FRONT.parents) - 1))]:
        (folder / "__init__.py").touch()
    env = {**os.environ, "PATH": path_env}
    env.pop("CC", None)
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info"], cwd=tree, env=env, check=True,
                   capture_output=True)
    return (tree / "wasmvisor.egg-info" / "entry_points.txt").read_text(), tree / "build" / "front" / \
        "containerd-shim-wasmvisor-v1"


def test_with_a_compiler_the_shim_binary_is_the_front(tmp_path: Path) -> None:
    if not any(shutil.which(c) for c in ("clang", "cc", "gcc")):
        pytest.skip("no C compiler here")
    scripts, front = metadata(tmp_path, os.environ.get("PATH", "/usr/bin:/bin"))
    assert "containerd-shim-wasmvisor-v1-python = wasmvisor.supervisor.shim.main:main" in scripts
    assert "containerd-shim-wasmvisor-v1 =" not in scripts
    assert front.read_bytes()[:4] == b"\x7fELF"


def test_without_a_compiler_the_shim_binary_is_the_python_shim(tmp_path: Path) -> None:
    empty = tmp_path / "no-compilers"
    empty.mkdir()
    scripts, front = metadata(tmp_path, str(empty))
    assert "containerd-shim-wasmvisor-v1 = wasmvisor.supervisor.shim.main:main" in scripts
    assert "containerd-shim-wasmvisor-v1-python = wasmvisor.supervisor.shim.main:main" in scripts
    assert not front.exists()
