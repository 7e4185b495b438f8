"""The Linux system calls Python 3.11's `os` lacks, through one ctypes handle on libc: namespaces
(unshare, setns), mounts (mount, umount2, pivot_root, mount_setattr), prctl, capabilities, seccomp,
close_range, execve, execveat, statfs, inotify and a bare fork(2).

glibc's wrapper is called where it has one; pivot_root, mount_setattr, close_range and seccomp go
through syscall(2) with the numbers of `wasmvisor.linux.arch`, and importing this module on a machine
without a table there raises UnsupportedArchitecture. Failures raise OSError(errno, "<call> <args>:
<strerror>").
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from wasmvisor.linux import arch

_NUMBERS = arch.syscall_numbers()  # refuses any machine without a table, at import
SYS_PIVOT_ROOT = _NUMBERS["pivot_root"]
SYS_MOUNT_SETATTR = _NUMBERS["mount_setattr"]
"""Linux 5.12+."""
SYS_CLOSE_RANGE = _NUMBERS["close_range"]
"""Linux 5.9+."""
SYS_SECCOMP = _NUMBERS["seccomp"]
SYS_EXECVEAT = _NUMBERS["execveat"]
AT_EMPTY_PATH = 0x1000

MNT_DETACH = 2
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100
MOUNT_ATTR_RDONLY = 0x1
CLOSE_RANGE_CLOEXEC = 4
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class MountAttr(ctypes.Structure):
    """struct mount_attr (linux/mount.h), MOUNT_ATTR_SIZE_VER0."""

    _fields_ = (("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64))


class Statfs(ctypes.Structure):
    """glibc's struct statfs on the 64-bit machines of `arch` (bits/statfs.h: 120 bytes; `__fsword_t`
    is a long, the block and file counts 64-bit on both)."""

    _fields_ = (("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long), ("f_blocks", ctypes.c_uint64),
                ("f_bfree", ctypes.c_uint64), ("f_bavail", ctypes.c_uint64), ("f_files", ctypes.c_uint64),
                ("f_ffree", ctypes.c_uint64), ("f_fsid", ctypes.c_int * 2), ("f_namelen", ctypes.c_long),
                ("f_frsize", ctypes.c_long), ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4))


class CapHeader(ctypes.Structure):
    """struct __user_cap_header_struct (linux/capability.h)."""

    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class CapData(ctypes.Structure):
    """struct __user_cap_data_struct: one 32-bit word of each set (version 3 takes two)."""

    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_libc.capget.argtypes = (ctypes.POINTER(CapHeader), ctypes.POINTER(CapData))
_libc.capset.argtypes = (ctypes.POINTER(CapHeader), ctypes.POINTER(CapData))
_libc.execve.argtypes = (ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p))
_libc.statfs.argtypes = (ctypes.c_char_p, ctypes.POINTER(Statfs))
_libc.inotify_init1.argtypes = (ctypes.c_int,)
_libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
_libc.syscall.restype = ctypes.c_long
_libc.fork.restype = ctypes.c_int


def _check(result: int, what: str) -> int:
    """`result` when it is not -1 (the C convention for failure), else OSError naming `what`."""
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


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


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2): its result (PR_GET_* options answer with it)."""
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option}, {arg2})")


def set_parent_death_signal(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` when our parent *thread* exits
    (0 = nothing)."""
    prctl(PR_SET_PDEATHSIG, sig)


def set_child_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants become our children, not init's."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def capget() -> tuple[int, int, int]:
    """The calling thread's (effective, permitted, inheritable) capabilities as 64-bit masks."""
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    effective, permitted, inheritable = (getattr(data[0], key) | getattr(data[1], key) << 32
                                         for key in ("effective", "permitted", "inheritable"))
    return effective, permitted, inheritable


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) of the calling thread, the sets given as 64-bit masks."""
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    for word in range(2):
        data[word].effective, data[word].permitted, data[word].inheritable = (
            (mask >> (32 * word)) & 0xFFFFFFFF for mask in (effective, permitted, inheritable))
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def seccomp(operation: int, flags: int, args: object) -> None:
    """seccomp(2); `args` is what the operation points at (a ctypes.byref of a struct sock_fprog
    for SECCOMP_SET_MODE_FILTER)."""
    result = _libc.syscall(ctypes.c_long(SYS_SECCOMP), ctypes.c_uint(operation), ctypes.c_uint(flags), args)
    _check(int(result), f"seccomp({operation}, {flags:#x})")


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    """close_range(2): close (or with CLOSE_RANGE_CLOEXEC, mark close-on-exec) fds first..last."""
    result = _libc.syscall(ctypes.c_long(SYS_CLOSE_RANGE), ctypes.c_uint(first), ctypes.c_uint(last),
                           ctypes.c_uint(flags))
    _check(int(result), f"close_range({first}, {last}, {flags:#x})")


def c_string_array(items: Sequence[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    """A NULL-terminated `char *[]` for execve (build it before a seccomp filter is loaded)."""
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


def execve(path: bytes, argv: ctypes.Array[ctypes.c_char_p], envp: ctypes.Array[ctypes.c_char_p]) -> int:
    """execve(2) with arrays made by `c_string_array`. Returns only when it failed: the errno
    (nothing is raised, so that nothing more needs to run once a seccomp filter is in place)."""
    _libc.execve(path, argv, envp)
    return ctypes.get_errno()


def execveat(fd: int, argv: Sequence[str], env: Sequence[str]) -> None:
    """execveat(2) of the file `fd` refers to (AT_EMPTY_PATH); returns only by raising OSError."""
    args, envp = c_string_array([os.fsencode(a) for a in argv]), c_string_array([os.fsencode(e) for e in env])
    result = _libc.syscall(ctypes.c_long(SYS_EXECVEAT), ctypes.c_int(fd), ctypes.c_char_p(b""), args, envp,
                           ctypes.c_int(AT_EMPTY_PATH))
    _check(int(result), f"execveat({fd}, {argv[0]!r})")


def statfs_type(path: str) -> int:
    """statfs(2)'s f_type of `path` (what `stat -f -c %t` shows)."""
    buf = Statfs()
    _check(_libc.statfs(os.fsencode(path), ctypes.byref(buf)), f"statfs {path}")
    return int(buf.f_type)


def inotify_init1(flags: int) -> int:
    """A new inotify fd."""
    return _check(_libc.inotify_init1(flags), "inotify_init1")


def inotify_add_watch(fd: int, path: str, mask: int) -> int:
    """Watch `path` on the inotify `fd`; the watch descriptor."""
    return _check(_libc.inotify_add_watch(fd, os.fsencode(path), mask), f"inotify_add_watch {path}")


def fork() -> int:
    """fork(2) straight from libc, without any of Python's own after-fork work: see
    `wasmvisor.linux.fork.quiet_fork`, the one caller."""
    return _check(int(_libc.fork()), "fork")
