"""Rootfs mounts: containerd `Mount` entries -> mount(2), and recursive unmount of a bundle's rootfs.

Option parsing is pure (`parse_options`). `mount_all` and `unmount_all` call libc through ctypes.
`MountSpec` mirrors `containerd.types.Mount` so that this module needs no protobuf; the supervisor
converts.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from wasmvisor.errors import Internal, InvalidArgument

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MNT_DETACH = 0x2

_PROPAGATION_TYPES = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

# option -> (clear?, flag). "clear" options undo a flag set earlier in the list ("ro,rw" is rw).
_FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID),
    "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV),
    "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC),
    "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "remount": (False, MS_REMOUNT),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "atime": (True, MS_NOATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "diratime": (True, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "lazytime": (False, MS_LAZYTIME),
    "nolazytime": (True, MS_LAZYTIME),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
}
_PROPAGATION_OPTIONS: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
# Flags a read-only (etc.) bind mount needs a second, MS_REMOUNT call for: mount(2) ignores them with MS_BIND.
_BIND_REMOUNT_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME
_PAGE_SIZE = 4096
_chdir_lock = threading.Lock()


@dataclass(frozen=True)
class MountSpec:
    """One `containerd.types.Mount`: fstype, source, target inside the rootfs ("" = the rootfs itself)."""

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = field(default_factory=tuple)


def parse_options(options: Sequence[str]) -> tuple[int, str, list[int]]:
    """fstab options -> (MS_* flags, filesystem data string, propagation changes in order).

    Unknown options (`lowerdir=...`, `size=64m`, `userxattr`) become the comma-joined data.
    """
    flags = 0
    data: list[str] = []
    propagation: list[int] = []
    for option in options:
        if option in _FLAG_OPTIONS:
            clear, flag = _FLAG_OPTIONS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in _PROPAGATION_OPTIONS:
            propagation.append(_PROPAGATION_OPTIONS[option])
        else:
            data.append(option)
    return flags, ",".join(data), propagation


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.mount.restype = ctypes.c_int
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.umount2.restype = ctypes.c_int
    return libc


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """mount(2); raises OSError."""
    rc = _libc().mount(
        os.fsencode(source) if source else None,
        os.fsencode(target),
        os.fsencode(fstype) if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _umount(target: str, flags: int = MNT_DETACH) -> None:
    if _libc().umount2(os.fsencode(target), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _compact_lowerdirs(data: str) -> tuple[str, str] | None:
    """For overlay data longer than a page: (common parent dir, data with lowerdirs relative to it).

    As containerd does: lowerdirs of one snapshotter share a parent (`.../snapshots/`), so mounting
    from inside it with relative lowerdirs fits many more layers. None if that does not help.
    """
    options = data.split(",")
    index = next((i for i, o in enumerate(options) if o.startswith("lowerdir=")), None)
    if index is None:
        return None
    lowerdirs = options[index].removeprefix("lowerdir=").split(":")
    if len(lowerdirs) < 2 or not all(os.path.isabs(d) for d in lowerdirs):
        return None
    common = os.path.commonpath(lowerdirs)
    if common == "/":
        return None
    options[index] = "lowerdir=" + ":".join(os.path.relpath(d, common) for d in lowerdirs)
    compact = ",".join(options)
    if len(compact) >= _PAGE_SIZE:
        return None
    return common, compact


def _mount_one(spec: MountSpec, dest: str) -> None:
    flags, data, propagation = parse_options(spec.options)
    chdir_to = None
    if spec.type == "overlay" and len(data) >= _PAGE_SIZE:
        compacted = _compact_lowerdirs(data)
        if compacted is None:
            raise OSError(errno.E2BIG, f"overlay options are {len(data)} bytes, more than a page")
        chdir_to, data = compacted
    if not (flags & MS_REMOUNT) or data:
        if chdir_to is None:
            _mount(spec.source, dest, spec.type, flags, data)
        else:
            # chdir is process-wide: the lock keeps two overlay mounts from racing; the supervisor
            # itself uses absolute paths, so a moment in another directory is harmless.
            with _chdir_lock:
                cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.chdir(chdir_to)
                    _mount(spec.source, dest, spec.type, flags, data)
                finally:
                    os.fchdir(cwd)
                    os.close(cwd)
    for change in propagation:
        _mount("", dest, "", change, "")
    if flags & MS_BIND and flags & _BIND_REMOUNT_FLAGS:
        _mount("", dest, "", (flags & ~(MS_REC | _PROPAGATION_TYPES)) | MS_REMOUNT | MS_BIND, "")


def _destination(target: str, relative: str) -> str:
    if not relative:
        return target
    dest = os.path.normpath(os.path.join(target, relative.lstrip("/")))
    if dest != target and not dest.startswith(target.rstrip("/") + "/"):
        raise InvalidArgument(f"mount target {relative!r} leaves the rootfs {target}")
    return dest


def mount_all(mounts: Sequence[MountSpec], target: str) -> None:
    """Mount `mounts` in order onto `target` (or `target/<m.target>`). All or nothing.

    On failure, unmounts what this call mounted and raises InvalidArgument naming the mount:
    `rootfs mount 1 (overlay on /x/rootfs): No such file or directory`.
    """
    target = os.path.abspath(target)
    done: list[str] = []
    for number, spec in enumerate(mounts, start=1):
        dest = _destination(target, spec.target)
        try:
            _mount_one(spec, dest)
        except OSError as exc:
            for mounted in reversed(done):
                try:
                    _umount(mounted)
                except OSError:
                    pass
            reason = exc.strerror or str(exc)
            raise InvalidArgument(f"rootfs mount {number} ({spec.type} on {dest}): {reason}") from exc
        done.append(dest)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    if "\\" not in field:
        return field
    out = bytearray()
    raw = field.encode()
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 3 < len(raw) and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Every mount point of this mount namespace, in mount order (duplicates for stacked mounts)."""
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        return [_unescape(line.split(" ", 5)[4]) for line in f if line.strip()]


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def is_mounted(path: str) -> bool:
    """Whether `path` is a mount point."""
    real = os.path.realpath(path)
    return real in mount_points()


def unmount_all(target: str) -> None:
    """Unmount `target` and every mount below it, deepest first, lazily (MNT_DETACH).

    "Not mounted" and "does not exist" are not errors. Raises Internal when something stays mounted.
    """
    top = os.path.realpath(target)
    for _ in range(64):  # stacked mounts need one pass per layer
        points = [p for p in mount_points() if _under(p, top)]
        if not points:
            return
        # Deepest paths first; among equal paths the latest mount (the one on top) first.
        ordered = sorted(enumerate(points), key=lambda item: (item[1].count("/"), item[0]), reverse=True)
        for _index, point in ordered:
            try:
                _umount(point)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT):
                    raise Internal(f"unmount {point}: {exc.strerror}") from exc
    raise Internal(f"unmount {top}: still mounted after 64 passes")
