"""The machines wasmvisor runs on: one system call table for each, checked against the kernel's own
tables, and one clear line on any other machine (at import of the syscalls module, and from the shim)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wasmvisor.linux import arch

REPO = Path(__file__).resolve().parents[3]

KERNEL_TABLES = {
    # arch/x86/entry/syscalls/syscall_64.tbl
    "x86_64": {"pivot_root": 155, "seccomp": 317, "close_range": 436, "mount_setattr": 442, "execveat": 322},
    # include/uapi/asm-generic/unistd.h, which arm64 uses
    "aarch64": {"pivot_root": 41, "seccomp": 277, "close_range": 436, "mount_setattr": 442, "execveat": 281},
}

ON_RISCV = """
import os, sys
real = os.uname()
os.uname = lambda: os.uname_result((real.sysname, real.nodename, real.release, real.version, "riscv64"))
sys.argv[1:] = ["-namespace", "ns", "-address", "/run/c.sock", "-id", "t1", sys.argv.pop(1)]
{body}
"""


def test_x86_64_and_aarch64_have_the_kernels_numbers() -> None:
    assert arch.SYSCALL_NUMBERS == KERNEL_TABLES
    assert arch.SUPPORTED == ("x86_64", "aarch64")


def test_this_machine_is_supported() -> None:
    assert arch.syscall_numbers() is arch.SYSCALL_NUMBERS[os.uname().machine]


@pytest.mark.parametrize("machine", ["riscv64", "ppc64le", "s390x", "armv7l", "i686"])
def test_another_machine_is_refused_naming_it_and_the_supported_ones(machine: str) -> None:
    with pytest.raises(arch.UnsupportedArchitecture) as caught:
        arch.syscall_numbers(machine)
    assert str(caught.value) == f"unsupported architecture {machine}: wasmvisor runs on x86_64 and aarch64"


def _on_riscv(body: str, action: str = "start") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", ON_RISCV.format(body=body), action], capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def test_importing_the_syscalls_module_on_another_machine_raises_that_error() -> None:
    done = _on_riscv("from wasmvisor.linux import syscalls")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "wasmvisor.linux.arch.UnsupportedArchitecture: unsupported architecture riscv64: "
        "wasmvisor runs on x86_64 and aarch64")


@pytest.mark.parametrize("action", ["start", "delete"])
def test_the_shim_refuses_another_machine_with_one_line_on_stderr(action: str) -> None:
    done = _on_riscv("from wasmvisor.supervisor.shim.main import main\nmain()", action)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"wasmvisor {action}: unsupported architecture riscv64: "
                           "wasmvisor runs on x86_64 and aarch64\n")
