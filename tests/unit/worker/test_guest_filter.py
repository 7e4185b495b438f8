"""The wasm guest's seccomp allow-list: what an escaped guest could still ask the kernel for, tried in a
forked child under the filter (the filter dies with it)."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

from tests.unit.worker.child import in_child
from wasmvisor.worker.guest_filter import ALLOWED, guest_filter, guest_profile
from wasmvisor.worker.seccomp import resolve_syscall

PROT_READ_WRITE_EXEC = 0x7
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17

DENIED_CALLS = {
    # name: arguments (numbers only), each call harmless if it were allowed in a throwaway child
    "ptrace": (0, 0, 0, 0),  # PTRACE_TRACEME
    "process_vm_readv": (1, 0, 0, 0, 0, 0),
    "process_vm_writev": (1, 0, 0, 0, 0, 0),
    "mount": (0, 0, 0, 0, 0),
    "umount2": (0, 0),
    "unshare": (CLONE_NEWUSER,),
    "setns": (-1, 0),
    "bpf": (0, 0, 0),
    "keyctl": (0, 0, 0, 0, 0),
    "add_key": (0, 0, 0, 0, 0),
    "personality": (0xFFFFFFFF,),
    "init_module": (0, 0, 0),
    "finit_module": (-1, 0, 0),
    "kexec_load": (0, 0, 0, 0),
    "socket": (2, 1, 0),  # AF_INET, SOCK_STREAM
    "kill": (1, 0),
    "tgkill": (1, 1, 0),
    "execve": (0, 0, 0),
    "chroot": (0,),
    "setuid": (0,),
    "capset": (0, 0),
    "perf_event_open": (0, 0, 0, 0, 0),
    "userfaultfd": (0,),
    "io_uring_setup": (0, 0),
}


def _syscall(name: str, *args: int) -> int:
    """The errno of syscall `name` (0 when it worked)."""
    libc = ctypes.CDLL(None, use_errno=True)
    number = resolve_syscall(name)
    assert number is not None and number >= 0, name
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return 0 if result != -1 else ctypes.get_errno()


def _under_filter(calls: dict[str, tuple[int, ...]]) -> dict[str, int]:
    guest_filter().load()
    return {name: _syscall(name, *args) for name, args in calls.items()}


def test_dangerous_calls_fail_with_eperm_under_the_filter() -> None:
    seen = in_child(lambda: _under_filter(DENIED_CALLS))
    assert seen == dict.fromkeys(DENIED_CALLS, errno.EPERM)


def test_new_processes_are_refused_but_threads_are_not() -> None:
    def child() -> dict[str, object]:
        guest_filter().load()
        out: dict[str, object] = {"fork": _syscall("clone", SIGCHLD, 0, 0, 0, 0), "clone3": _syscall("clone3", 0, 0)}
        import threading

        done: list[int] = []
        worker = threading.Thread(target=lambda: done.append(1))
        worker.start()
        worker.join()
        out["thread"] = done
        return out

    assert in_child(child) == {"fork": errno.EPERM, "clone3": errno.ENOSYS, "thread": [1]}


def test_no_page_becomes_executable_but_plain_memory_works() -> None:
    def child() -> dict[str, object]:
        guest_filter().load()
        page = mmap.mmap(-1, 4096)
        page[:5] = b"hello"
        libc = ctypes.CDLL(None, use_errno=True)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        protect = libc.mprotect(ctypes.c_void_p(address), ctypes.c_size_t(4096), PROT_READ_WRITE_EXEC)
        return {"data": page[:5].decode(), "mprotect": ctypes.get_errno() if protect else 0,
                "mmap_exec": _syscall("mmap", 0, 4096, PROT_READ_WRITE_EXEC, 0x22, -1, 0),
                "random": len(os.urandom(16))}

    assert in_child(child) == {"data": "hello", "mprotect": errno.EPERM, "mmap_exec": errno.EPERM, "random": 16}


def test_filter_is_compiled_once_and_applies_to_every_thread() -> None:
    assert guest_filter() is guest_filter()
    assert guest_profile().flags == ("SECCOMP_FILTER_FLAG_TSYNC",)


AARCH64_LACKS = {"poll", "select", "epoll_wait"}
"""Allowed names arm64 has no system call for (its libc uses ppoll, pselect6, epoll_pwait)."""


def test_every_allowed_name_is_a_system_call_of_this_machine() -> None:
    missing = {name for name in ALLOWED if resolve_syscall(name) is None}
    assert missing == (AARCH64_LACKS & set(ALLOWED) if os.uname().machine == "aarch64" else set())
