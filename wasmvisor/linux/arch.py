"""The machines wasmvisor runs on, with the numbers of the system calls glibc has no wrapper for.

One table per architecture; any other machine is refused with one line naming it. Cheap to import
(only `os`): the shim's `start` checks the machine here without loading ctypes.
"""

from __future__ import annotations

import os

SYSCALL_NUMBERS = {
    # arch/x86/entry/syscalls/syscall_64.tbl
    "x86_64": {"pivot_root": 155, "seccomp": 317, "close_range": 436, "mount_setattr": 442, "execveat": 322},
    # include/uapi/asm-generic/unistd.h: arm64 has the generic numbers (pivot_root 155 is getpgid there)
    "aarch64": {"pivot_root": 41, "seccomp": 277, "close_range": 436, "mount_setattr": 442, "execveat": 281},
}
"""Machine (`uname -m`) -> system call name -> number."""
SUPPORTED = tuple(SYSCALL_NUMBERS)


class UnsupportedArchitecture(Exception):
    """This machine is not one wasmvisor knows the system calls and struct layouts of."""


def syscall_numbers(machine: str | None = None) -> dict[str, int]:
    """The system call numbers of `machine` (this one by default); UnsupportedArchitecture for any
    machine without a table."""
    name = machine if machine is not None else os.uname().machine
    try:
        return SYSCALL_NUMBERS[name]
    except KeyError:
        raise UnsupportedArchitecture(
            f"unsupported architecture {name}: wasmvisor runs on {' and '.join(SUPPORTED)}") from None
