"""The ctypes calls: struct layouts as glibc has them, results and OSError naming the call."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from wasmvisor.linux import syscalls

PROC_SUPER_MAGIC = 0x9FA0
TMPFS_MAGIC = 0x01021994


def test_struct_statfs_is_glibcs_120_bytes_with_f_type_first() -> None:
    assert ctypes.sizeof(syscalls.Statfs) == 120
    assert syscalls.Statfs.f_type.offset == 0
    assert syscalls.Statfs.f_fsid.offset == 56


def test_statfs_type_names_the_file_system() -> None:
    assert syscalls.statfs_type("/proc") == PROC_SUPER_MAGIC
    assert syscalls.statfs_type("/dev/shm") == TMPFS_MAGIC


def test_a_failed_call_raises_oserror_with_its_errno_and_what_was_called() -> None:
    with pytest.raises(OSError) as caught:
        syscalls.statfs_type("/does/not/exist")
    assert caught.value.errno == errno.ENOENT
    assert caught.value.strerror == "statfs /does/not/exist: No such file or directory"


def test_prctl_returns_the_answer_of_a_get_option() -> None:
    pr_get_dumpable = 3
    assert syscalls.prctl(pr_get_dumpable) in (0, 1, 2)
    with pytest.raises(OSError) as caught:
        syscalls.prctl(-1)
    assert caught.value.errno == errno.EINVAL


def test_capget_gives_64_bit_masks() -> None:
    effective, permitted, inheritable = syscalls.capget()
    assert all(0 <= mask < 2**64 for mask in (effective, permitted, inheritable))
    assert effective & ~permitted == 0


def test_close_range_marks_fds_close_on_exec() -> None:
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        os.set_inheritable(fd, True)
        syscalls.close_range(fd, fd, syscalls.CLOSE_RANGE_CLOEXEC)
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)
