"""Rootfs mounts: containerd `Mount` entries -> mount(2), and recursive unmount of a bundle's rootfs.

Option parsing is pure (`parse_options`, on wasmvisor.linux.mount_options). `mount_all` and
`unmount_all` make the calls through wasmvisor.linux.syscalls.
`MountSpec` mirrors `containerd.types.Mount` so that this module needs no protobuf; the supervisor
converts.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from wasmvisor.errors import Internal, InvalidArgument
from wasmvisor.linux import mount_options, mountinfo, syscalls
from wasmvisor.linux.mount_options import (
    FLAG_OPTIONS,
    MS_BIND,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    PER_MOUNT_FLAGS,
    PROPAGATION_TYPES,
)

ROOTFS_FLAG_OPTIONS = {**FLAG_OPTIONS, "remount": (MS_REMOUNT, 0)}
"""The options of containerd's rootfs mounts: the shared table and `remount`."""
# Flags a read-only (etc.) bind mount needs a second, MS_REMOUNT call for: mount(2) ignores them with MS_BIND.
_BIND_REMOUNT_FLAGS = MS_RDONLY | PER_MOUNT_FLAGS
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
    flags, propagation, data = mount_options.parse(options, ROOTFS_FLAG_OPTIONS)
    return flags, data, list(propagation)


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """mount(2); raises OSError with the bare reason (the caller's message names the mount)."""
    try:
        syscalls.mount(source or None, target, fstype or None, flags, data)
    except OSError as exc:
        raise OSError(exc.errno, os.strerror(exc.errno or 0)) from None


def _umount(target: str) -> None:
    """A lazy umount2(2); raises OSError with the bare reason."""
    try:
        syscalls.umount2(target, syscalls.MNT_DETACH)
    except OSError as exc:
        raise OSError(exc.errno, os.strerror(exc.errno or 0)) from None


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
        _mount("", dest, "", (flags & ~(MS_REC | PROPAGATION_TYPES)) | MS_REMOUNT | MS_BIND, "")


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


def is_mounted(path: str) -> bool:
    """Whether `path` is a mount point."""
    real = os.path.realpath(path)
    return real in mountinfo.mount_points()


def unmount_all(target: str) -> None:
    """Unmount `target` and every mount below it, deepest first, lazily (MNT_DETACH).

    "Not mounted" and "does not exist" are not errors. Raises Internal when something stays mounted.
    """
    top = os.path.realpath(target)
    for _ in range(64):  # stacked mounts need one pass per layer
        points = mountinfo.points_under(top, mountinfo.mount_points())
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
