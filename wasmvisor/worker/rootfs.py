"""The container's filesystem, built by the worker in its own mount namespace: the root bound
onto itself, the spec's `mounts` in order, /dev's nodes and links, masked and read-only paths,
a read-only root when asked; then pivot_root into it.

Every destination is resolved inside the root without leaving it (wasmvisor.spec.resolve_in_root),
so a symlink in the image cannot point a mount at the host. Everything happens in a mount
namespace the worker unshared after making its whole tree private: a failing worker leaves
nothing mounted on the host, as its namespace goes with it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from wasmvisor.errors import InvalidArgument, ShimError
from wasmvisor.linux import mountinfo, syscalls
from wasmvisor.linux.mount_options import MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, PER_MOUNT_FLAGS
from wasmvisor.spec import resolve_in_root
from wasmvisor.worker.spec_linux import DEFAULT_DEV_LINKS, ContainerLayout, Device, Mount

log = logging.getLogger(__name__)

OPTIONAL_TYPES = ("cgroup", "cgroup2")
"""Mounts skipped (with a debug log) when the kernel refuses them: a cgroup hierarchy cannot
always be mounted in a container (cgroup v1 controllers already mounted with other options)."""
HOST_NULL = "/dev/null"


def build_rootfs(root: str, layout: ContainerLayout) -> None:
    """Make the mount tree private, bind `root` onto itself and mount everything the spec asks
    for under it. Raises InvalidArgument naming the entry that failed."""
    if not os.path.isdir(root):
        raise InvalidArgument(f"container root {root}: not a directory")
    syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)
    syscalls.mount(root, root, None, MS_BIND | MS_REC)
    for entry in layout.mounts:
        mount_entry(root, entry)
    if any(m.destination == "/dev" and m.type != "bind" for m in layout.mounts):
        try:
            populate_dev(root, layout.devices, pts=any(m.destination == "/dev/pts" for m in layout.mounts))
        except OSError as exc:
            raise InvalidArgument(f"/dev: cannot create {exc.filename or 'a device'}: "
                                  f"{os.strerror(exc.errno or 0)}") from None
    for path in layout.masked_paths:
        mask_path(root, path)
    for path in layout.readonly_paths:
        readonly_path(root, path)
    if layout.readonly_root:
        remount_readonly(root)


def mount_entry(root: str, entry: Mount) -> None:
    """Apply one entry of the spec's `mounts` under `root`."""
    try:
        dest = resolve_in_root(root, entry.destination)
    except ShimError as exc:
        raise InvalidArgument(f"{entry.name}: {exc.message}") from None
    options = entry.options
    try:
        if entry.type == "bind":
            _bind(entry, dest)
        else:
            _make_dir(entry, dest)
            syscalls.mount(entry.source or entry.type, dest, entry.type, options.flags, options.data)
        for propagation in options.propagation:
            syscalls.mount(None, dest, None, propagation)
    except OSError as exc:
        if entry.type in OPTIONAL_TYPES:
            log.debug("%s: %s not mounted (%s): skipped", entry.name, entry.type, os.strerror(exc.errno or 0))
            return
        if exc.errno == errno.ENODEV:
            raise InvalidArgument(f"{entry.name}: unknown filesystem type {entry.type!r}") from None
        raise InvalidArgument(f"{entry.name}: cannot mount {entry.type} {entry.source or ''}: "
                              f"{os.strerror(exc.errno or 0)}".replace("  ", " ")) from None
    log.debug("mounted %s (%s)", entry.name, entry.type)


def _bind(entry: Mount, dest: str) -> None:
    try:
        source_is_dir = stat.S_ISDIR(os.stat(entry.source).st_mode)
    except FileNotFoundError:
        raise InvalidArgument(f"{entry.name}: bind source {entry.source}: no such file") from None
    except OSError as exc:
        raise InvalidArgument(f"{entry.name}: bind source {entry.source}: {exc.strerror}") from None
    if source_is_dir:
        _make_dir(entry, dest)
    else:
        _make_dir(entry, os.path.dirname(dest))
        if not os.path.lexists(dest):
            try:
                os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
            except OSError as exc:
                raise InvalidArgument(f"{entry.name}: cannot create the mount point: {exc.strerror}") from None
    syscalls.mount(entry.source, dest, None, entry.options.flags & (MS_BIND | MS_REC))
    extra = entry.options.remount_flags
    if extra:
        syscalls.mount(None, dest, None, MS_REMOUNT | MS_BIND | extra | _kept_flags(dest))
    if entry.options.recursive_readonly or (entry.options.flags & MS_REC and extra & MS_RDONLY):
        make_tree_readonly(dest)


def make_tree_readonly(path: str) -> None:
    """`rbind` + `ro`: the mounts under `path` read-only too (a bind remount changes one mount
    only). mount_setattr(2) does it at once; before Linux 5.12 each submount is remounted."""
    try:
        syscalls.mount_setattr(path, syscalls.MOUNT_ATTR_RDONLY)
        return
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
    below = submounts(mountinfo.mount_points(), path)
    for mount_point in below:
        syscalls.mount(None, mount_point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _kept_flags(mount_point))
    log.debug("%s: %d submounts remounted read-only one by one (no mount_setattr)", path, len(below))


def submounts(points: list[str], path: str) -> list[str]:
    """The mount points strictly under `path` among `points` (mountinfo's), each once, parents first."""
    top = path.rstrip("/") or "/"
    below = dict.fromkeys(p for p in mountinfo.points_under(top, points) if p != top)
    return sorted(below, key=lambda p: p.count("/"))


def _make_dir(entry: Mount, path: str) -> None:
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(f"{entry.name}: cannot create the mount point: {exc.strerror}") from None


def _kept_flags(path: str) -> int:
    """The per-mount flags `path` has now that a bind remount must repeat (ST_* == MS_* bits)."""
    return os.statvfs(path).f_flag & PER_MOUNT_FLAGS


def populate_dev(root: str, devices: tuple[Device, ...], pts: bool) -> None:
    """Device nodes (mknod, or a bind of the host's node where mknod is refused) and the usual
    links in the container's freshly mounted /dev."""
    for device in devices:
        path = resolve_in_root(root, device.path)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if os.path.lexists(path):
            continue
        kind = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[device.kind]
        try:
            os.mknod(path, kind | device.mode, os.makedev(device.major, device.minor))
        except PermissionError:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            syscalls.mount(device.path, path, None, MS_BIND)
            continue
        os.chmod(path, device.mode)  # mknod's mode went through the umask
        if device.uid or device.gid:
            os.chown(path, device.uid, device.gid)
    links = list(DEFAULT_DEV_LINKS)
    if pts:
        links.append(("/dev/ptmx", "pts/ptmx"))
    for link, target in links:
        path = resolve_in_root(root, link)
        if not os.path.lexists(path):
            os.symlink(target, path)


def mask_path(root: str, path: str) -> None:
    """Hide `path`: /dev/null over a file, an empty read-only tmpfs over a directory."""
    host = resolve_in_root(root, path)
    if not os.path.lexists(host):
        return
    try:
        if os.path.isdir(host):
            syscalls.mount("tmpfs", host, "tmpfs", MS_RDONLY)
        else:
            syscalls.mount(HOST_NULL, host, None, MS_BIND)
    except OSError as exc:
        raise InvalidArgument(f"linux.maskedPaths {path}: cannot mask: {os.strerror(exc.errno or 0)}") from None


def readonly_path(root: str, path: str) -> None:
    """Make `path` read-only: bind it onto itself, remount the bind read-only."""
    host = resolve_in_root(root, path)
    if not os.path.lexists(host):
        return
    try:
        syscalls.mount(host, host, None, MS_BIND | MS_REC)
        syscalls.mount(None, host, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _kept_flags(host))
    except OSError as exc:
        raise InvalidArgument(f"linux.readonlyPaths {path}: {os.strerror(exc.errno or 0)}") from None


def remount_readonly(root: str) -> None:
    """`root.readonly`: the root mount read-only (the mounts under it keep their own flags)."""
    syscalls.mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _kept_flags(root))


def enter_root(root: str, propagation: int = MS_REC | MS_PRIVATE) -> None:
    """pivot_root into `root` and detach the old root: afterwards `/` is the container's root and
    nothing of the host's tree is reachable. `root` must be a mount point (build_rootfs binds it)."""
    os.chdir(root)
    # pivot_root(".", "."): the old root ends up mounted on top of the new one, where a lazy
    # unmount of "." removes it, with no put_old directory needed in the image.
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")
    if propagation != MS_REC | MS_PRIVATE:
        syscalls.mount(None, "/", None, propagation)


def set_hostname(name: str) -> None:
    """The container's hostname (its own UTS namespace)."""
    if name:
        try:
            syscalls.sethostname(name)
        except OSError as exc:
            raise InvalidArgument(f"hostname {name!r}: {os.strerror(exc.errno or 0)}") from None
