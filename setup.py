"""Build step of the package (the metadata is in pyproject.toml): a wheel built from this tree carries
the pid-namespace relay compiled from wasmvisor/worker/relay.c, as scripts/setup.sh builds it for a clone.

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

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

RELAY_SOURCE = os.path.join("wasmvisor", "worker", "relay.c")
RELAY_BINARY = os.path.join("wasmvisor", "worker", "_bin", "wasmvisor-relay")
COMPILERS = ("clang", "cc", "gcc")


def compile_relay(build_lib: str) -> bool:
    """Compile relay.c into `build_lib`'s wasmvisor/worker/_bin; False (with a note) when no compiler can."""
    target = os.path.join(build_lib, RELAY_BINARY)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    for compiler in filter(None, (os.environ.get("CC"), *COMPILERS)):
        if shutil.which(compiler) is None:
            continue
        done = subprocess.run([compiler, "-O2", "-static", "-Wall", "-o", target, RELAY_SOURCE],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return True
        print(f"wasmvisor: {compiler} could not build the relay: {done.stderr.strip()}")
    print("wasmvisor: no C compiler built relay.c: the worker will use its Python relay")
    return False


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            compile_relay(self.build_lib)


class PlatformDistribution(Distribution):
    """Files go to platlib and the wheel is not pure, as for a package with extension modules."""

    def has_ext_modules(self) -> bool:
        return True


class BdistWheel(bdist_wheel):
    def get_tag(self) -> tuple[str, str, str]:
        return "py3", "none", super().get_tag()[2]  # no extension module: any CPython 3, no ABI


setup(distclass=PlatformDistribution, cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
