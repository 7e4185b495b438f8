"""mount(2) flags and the fstab-style options that name them, as mount(8) and runc read them: one
table for the rootfs mounts containerd sends the supervisor and the spec's mounts the worker makes.

Pure: nothing here makes a system call.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the `delete` action's unmount keeps typing unloaded
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# mount(2) flags (linux/mount.h)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
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
PROPAGATION_TYPES = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE
PER_MOUNT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME
"""Flags of one mount that a bind mount ignores and a bind remount sets exactly as given (so it must
repeat those it keeps); statvfs's ST_* bits have the same values."""

FLAG_OPTIONS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (MS_RDONLY, 0),
    "rw": (0, MS_RDONLY),
    "nosuid": (MS_NOSUID, 0),
    "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0),
    "dev": (0, MS_NODEV),
    "noexec": (MS_NOEXEC, 0),
    "exec": (0, MS_NOEXEC),
    "sync": (MS_SYNCHRONOUS, 0),
    "async": (0, MS_SYNCHRONOUS),
    "dirsync": (MS_DIRSYNC, 0),
    "mand": (MS_MANDLOCK, 0),
    "nomand": (0, MS_MANDLOCK),
    "noatime": (MS_NOATIME, 0),
    "atime": (0, MS_NOATIME),
    "nodiratime": (MS_NODIRATIME, 0),
    "diratime": (0, MS_NODIRATIME),
    "relatime": (MS_RELATIME, 0),
    "norelatime": (0, MS_RELATIME),
    "strictatime": (MS_STRICTATIME, 0),
    "nostrictatime": (0, MS_STRICTATIME),
    "lazytime": (MS_LAZYTIME, 0),
    "nolazytime": (0, MS_LAZYTIME),
    "nosymfollow": (MS_NOSYMFOLLOW, 0),
    "symfollow": (0, MS_NOSYMFOLLOW),
    "bind": (MS_BIND, 0),
    "rbind": (MS_BIND | MS_REC, 0),
}
"""Option -> (flags it sets, flags it clears): `ro,rw` is rw, the later option winning."""
PROPAGATION_OPTIONS: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
"""Option -> the propagation change it asks for (each is a mount(2) call of its own)."""


def parse(options: Iterable[str], flag_options: Mapping[str, tuple[int, int]] = FLAG_OPTIONS,
          ) -> tuple[int, tuple[int, ...], str]:
    """`["rbind", "ro", "rprivate", "mode=755"]` -> (MS_BIND|MS_REC|MS_RDONLY, (MS_PRIVATE|MS_REC,),
    "mode=755"): the flags, the propagation changes in order, and every other option comma-joined
    as the filesystem's data. Empty options are left out."""
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for option in options:
        if option in flag_options:
            on, off = flag_options[option]
            flags = (flags | on) & ~off
        elif option in PROPAGATION_OPTIONS:
            propagation.append(PROPAGATION_OPTIONS[option])
        elif option:
            data.append(option)
    return flags, tuple(propagation), ",".join(data)
