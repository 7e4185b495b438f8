"""Linux system calls Python 3.11's `os` lacks (unshare, setns, mount, umount2, pivot_root,
sethostname), through ctypes, and a fork without Python's at-fork hooks. Each raises
OSError(errno, "<call> <args>: <strerror>") on failure.
"""

from __future__ import annotations

import ctypes
import os
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
_libc.syscall.restype = ctypes.c_long
_libc.fork.restype = ctypes.c_int

SYS_PIVOT_ROOT = 155
"""x86_64's syscall number (glibc has no wrapper)."""
SYS_MOUNT_SETATTR = 442
"""x86_64 (and every architecture since the unified numbers of Linux 5.1); Linux 5.12+."""
MNT_DETACH = 2
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100
MOUNT_ATTR_RDONLY = 0x1


class MountAttr(ctypes.Structure):
    """struct mount_attr (linux/mount.h), MOUNT_ATTR_SIZE_VER0."""

    _fields_ = (("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64))


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), f"setns({nstype:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = _libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data or None))
    _check(result, f"mount {source or 'none'} on {target} (type {fstype or '-'}, flags {flags:#x}, data {data!r})")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_bytes(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    result = _libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), _bytes(new_root), _bytes(put_old))
    _check(int(result), f"pivot_root {new_root} {put_old}")


def sethostname(name: str) -> None:
    data = name.encode()
    _check(_libc.sethostname(data, len(data)), f"sethostname {name!r}")


def mount_setattr(path: str, attr_set: int, attr_clr: int = 0, flags: int = AT_RECURSIVE | AT_SYMLINK_NOFOLLOW) -> None:
    """Change the attributes of the mount at `path` (and, with AT_RECURSIVE, of every mount
    under it). OSError ENOSYS on kernels before 5.12."""
    attr = MountAttr(attr_set, attr_clr, 0, 0)
    result = _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), _bytes(path),
                           ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(int(result), f"mount_setattr {path} (set {attr_set:#x}, clear {attr_clr:#x}, flags {flags:#x})")


def single_threaded() -> bool:
    """True when the calling process has one thread (only then is `quiet_fork` safe)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def quiet_fork() -> int:
    """fork(2) without the at-fork hooks Python runs around `os.fork` (threading's, logging's,
    concurrent.futures'): returns 0 in the child, the child's pid in the parent.

    Why: those hooks are Python code run in a process whose pages are all shared with its parent,
    and Python 3.11 writes to every object and code object it runs (reference counts, the adaptive
    interpreter's counters), so each fork copied ~0.4-0.6 MB that the child then kept (measured with
    /proc/PID/smaps_rollup). What the hooks do (re-create the locks and thread records that other
    threads might have held at the fork) has nothing to undo in a process with one thread: call this
    only where `single_threaded()` said so. The one hook with an effect of its own, random's
    reseeding, is done here (a child must not repeat its parent's random sequence)."""
    pid = int(_libc.fork())
    if pid < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"fork: {os.strerror(errno)}")
    if pid == 0:
        random = sys.modules.get("random")
        if random is not None:
            random.seed()
    return pid
