"""Build step of the package (the metadata is in pyproject.toml, the console scripts here): a wheel built
from this tree carries the pid-namespace relay compiled from wasmvisor/worker/relay.c and the wasm runner
from wasmvisor/worker/runner.c, as scripts/setup.sh builds them for a clone, and the shim binary's
compiled front.

The front (wasmvisor/supervisor/shim/front.c) is installed as the script `containerd-shim-wasmvisor-v1`,
by wheels and editable installs alike; it answers `start` and `delete` in their common cases and execs
the Python shim, the console script `containerd-shim-wasmvisor-v1-python`, for everything else. Where no
compiler builds it, `containerd-shim-wasmvisor-v1` is that Python console script itself. Whether it
builds is decided when this file is loaded, because the console scripts (the wheel's metadata) depend on it.

The relay is a static binary for one architecture, so the wheel is a platform wheel
(`py3-none-linux_<arch>`: any CPython >= 3.11, no ABI of its own). When no C compiler can link it
statically (a build machine or an sdist install without one), the wheel is built without it and the worker
uses its Python relay (wasmvisor/worker/namespaces.py): the same behaviour, ~3.7 MB more a container.
An editable install builds nothing here: setup.sh does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from distutils.command.build_scripts import build_scripts  # setuptools' own copy of distutils

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

RELAY_SOURCE = os.path.join("wasmvisor", "worker", "relay.c")
RELAY_BINARY = os.path.join("wasmvisor", "worker", "_bin", "wasmvisor-relay")
RUNNER_SOURCE = os.path.join("wasmvisor", "worker", "runner.c")
RUNNER_BINARY = os.path.join("wasmvisor", "worker", "_bin", "wasmvisor-runner")
COMPILERS = ("clang", "cc", "gcc")
SHIM = "containerd-shim-wasmvisor-v1"
SHIM_ENTRY = "wasmvisor.supervisor.shim.main:main"
FRONT_SOURCE = os.path.join("wasmvisor", "supervisor", "shim", "front.c")
FRONT_BINARY = os.path.join("build", "front", SHIM)


def compilers() -> list[str]:
    return [c for c in filter(None, (os.environ.get("CC"), *COMPILERS)) if shutil.which(c)]


def compile_front() -> bool:
    """Compile front.c into FRONT_BINARY (static when the C library allows it: no dynamic loader on
    each start), unless it is there and newer; False (with a note) when no compiler can."""
    if os.path.exists(FRONT_BINARY) and os.path.getmtime(FRONT_BINARY) >= os.path.getmtime(FRONT_SOURCE):
        return True
    os.makedirs(os.path.dirname(FRONT_BINARY), exist_ok=True)
    for compiler in compilers():
        for static in (["-static"], []):
            done = subprocess.run([compiler, "-O2", "-s", *static, "-Wall", "-o", FRONT_BINARY, FRONT_SOURCE],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:
                return True
        print(f"wasmvisor: {compiler} could not build the shim's front: {done.stderr.strip()}")
    print(f"wasmvisor: no C compiler built front.c: {SHIM} is the Python shim")
    return False


def compile_worker_binary(build_lib: str, source: str, binary: str, flags: list[str], libs: list[str],
                          what: str, without: str) -> bool:
    """Compile `source` into `build_lib`'s `binary`; False (with a note saying `without`) when no compiler can."""
    target = os.path.join(build_lib, binary)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    for compiler in compilers():
        done = subprocess.run([compiler, "-O2", "-Wall", *flags, "-o", target, source, *libs],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return True
        print(f"wasmvisor: {compiler} could not build the {what}: {done.stderr.strip()}")
    print(f"wasmvisor: no C compiler built {os.path.basename(source)}: {without}")
    return False


def compile_relay(build_lib: str) -> bool:
    """relay.c, static, into wasmvisor/worker/_bin."""
    return compile_worker_binary(build_lib, RELAY_SOURCE, RELAY_BINARY, ["-static"], [], "relay",
                                 "the worker will use its Python relay")


def compile_runner(build_lib: str) -> bool:
    """runner.c, dynamic (it dlopens wasmtime's C library), into wasmvisor/worker/_bin."""
    return compile_worker_binary(build_lib, RUNNER_SOURCE, RUNNER_BINARY, [], ["-ldl"], "runner",
                                 "the worker will run wasm guests in Python")


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            compile_relay(self.build_lib)
            compile_runner(self.build_lib)


class BuildScripts(build_scripts):
    """The one script is front.c: its compiled binary goes into the build under the shim's name
    (distutils would read it as a text script and rewrite its #! line)."""

    def copy_scripts(self) -> tuple[list[str], list[str]]:
        self.mkpath(self.build_dir)
        target = os.path.join(self.build_dir, SHIM)
        self.copy_file(FRONT_BINARY, target)
        os.chmod(target, 0o755)
        return [target], [target]


class PlatformDistribution(Distribution):
    """Files go to platlib and the wheel is not pure, as for a package with extension modules."""

    def has_ext_modules(self) -> bool:
        return True


class BdistWheel(bdist_wheel):
    def get_tag(self) -> tuple[str, str, str]:
        return "py3", "none", super().get_tag()[2]  # no extension module: any CPython 3, no ABI


FRONT = os.path.exists(FRONT_SOURCE) and compile_front()
setup(
    distclass=PlatformDistribution,
    cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel, "build_scripts": BuildScripts},
    scripts=[FRONT_SOURCE] if FRONT else [],
    entry_points={"console_scripts": [
        "wasmvisor = wasmvisor.cli:main",
        f"{SHIM}-python = {SHIM_ENTRY}",
        *([] if FRONT else [f"{SHIM} = {SHIM_ENTRY}"]),
    ]},
)
