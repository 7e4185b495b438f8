"""The Linux parts of an OCI spec as typed values: namespaces, mounts and their options, device
nodes, masked and read-only paths (pure: nothing here makes a syscall or touches the filesystem).

Errors are `InvalidArgument` naming the entry (`mounts[3] /data: ...`, `linux.namespaces[1] ...`);
the worker (wasmvisor.worker.namespaces, wasmvisor.worker.rootfs) turns these values into
unshare/setns/mount calls.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wasmvisor.errors import InvalidArgument, Unimplemented
from wasmvisor.linux import mount_options
from wasmvisor.linux.clone_flags import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)
from wasmvisor.linux.mount_options import FLAG_OPTIONS, MS_BIND, MS_RDONLY, MS_REC, PROPAGATION_OPTIONS

NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "network": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "cgroup": CLONE_NEWCGROUP,
    "user": CLONE_NEWUSER,
    "time": CLONE_NEWTIME,
}
"""OCI namespace type -> CLONE_NEW* flag."""
ALWAYS_NEW = ("mount", "uts", "ipc")
"""Namespaces every container gets (new unless the spec joins one by path), as runwasi's do."""
UNSUPPORTED_NAMESPACES = ("user", "time")

SPEC_FLAG_OPTIONS = {**FLAG_OPTIONS, "rro": (MS_RDONLY, 0), "rrw": (0, MS_RDONLY)}
"""The mount options of a spec's mounts: the shared table and `rro`/`rrw` (recursive read-only)."""


@dataclass(frozen=True)
class MountOptions:
    """A mount's `options` split the way mount(2) wants them."""

    flags: int = 0
    """MS_* flags for the mount call (MS_BIND, MS_REC for bind/rbind; MS_RDONLY for ro...)."""
    propagation: tuple[int, ...] = ()
    """MS_PRIVATE/MS_SLAVE/... (with MS_REC for the r* forms), each applied by a call of its own."""
    data: str = ""
    """Everything else, comma-joined for the filesystem (`mode=755,size=65536k`)."""
    recursive_readonly: bool = False
    """`rro` (OCI runtime spec 1.1, what CRI asks for a RecursiveReadOnly volume): the mounts under
    a bind read-only too. `rbind` with `ro` means the same for wasmvisor."""

    @property
    def bind(self) -> bool:
        return bool(self.flags & MS_BIND)

    @property
    def remount_flags(self) -> int:
        """Flags a bind mount needs a second, MS_REMOUNT call for (the first ignores them)."""
        return self.flags & ~(MS_BIND | MS_REC)


def parse_mount_options(options: Sequence[str]) -> MountOptions:
    """`["rbind", "ro", "nosuid", "mode=755"]` -> flags MS_BIND|MS_REC|MS_RDONLY|MS_NOSUID, data
    `mode=755`. Later options win over earlier ones (`ro,rw` is rw); unknown options are data."""
    flags, propagation, data = mount_options.parse(options, SPEC_FLAG_OPTIONS)
    recursive = [option for option in options if option in ("rro", "rrw")]
    # `rro,rw` is rw: the later option wins, as for every flag
    recursive_readonly = bool(recursive) and recursive[-1] == "rro" and bool(flags & MS_RDONLY)
    return MountOptions(flags=flags, propagation=propagation, data=data, recursive_readonly=recursive_readonly)


@dataclass(frozen=True)
class Mount:
    """One entry of the spec's `mounts`."""

    index: int
    destination: str
    """Absolute and normalized path in the container."""
    type: str
    """Filesystem type; "bind" for bind mounts whatever the spec wrote (`none`, `""`...)."""
    source: str
    options: MountOptions

    @property
    def name(self) -> str:
        """How error messages name it: `mounts[3] /data`."""
        return f"mounts[{self.index}] {self.destination}"


def parse_mounts(doc: Mapping[str, Any], bundle: str = "") -> list[Mount]:
    """The spec's `mounts`, in order. A bind source that is relative is taken from `bundle`."""
    raw = doc.get("mounts") or []
    if not isinstance(raw, list):
        raise InvalidArgument("mounts must be a list")
    mounts = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InvalidArgument(f"mounts[{i}]: not an object")
        dest = entry.get("destination")
        if not isinstance(dest, str) or not dest:
            raise InvalidArgument(f"mounts[{i}]: destination must be a non-empty string")
        if not dest.startswith("/"):
            raise InvalidArgument(f"mounts[{i}] {dest}: destination is not an absolute path")
        kind = entry.get("type") or ""
        source = entry.get("source") or ""
        options = entry.get("options") or []
        if not isinstance(kind, str) or not isinstance(source, str):
            raise InvalidArgument(f"mounts[{i}] {dest}: type and source must be strings")
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise InvalidArgument(f"mounts[{i}] {dest}: options must be a list of strings")
        parsed = parse_mount_options(options)
        if kind == "bind" or parsed.bind:
            if kind == "bind" and not parsed.bind:
                parsed = dataclasses.replace(parsed, flags=parsed.flags | MS_BIND)
            kind = "bind"
            if not source:
                raise InvalidArgument(f"mounts[{i}] {dest}: bind mount without a source")
            if not source.startswith("/"):
                source = posixpath.join(bundle or "/", source)
            source = posixpath.normpath(source)
        elif not kind:
            raise InvalidArgument(f"mounts[{i}] {dest}: no filesystem type")
        mounts.append(Mount(i, posixpath.normpath(dest), kind, source, parsed))
    return mounts


@dataclass(frozen=True)
class Namespace:
    """One namespace the container gets: a new one, or the one at `path` (joined with setns)."""

    type: str
    flag: int
    path: str = ""
    index: int = -1
    """Its position in `linux.namespaces` (-1 for one wasmvisor adds: mount, uts, ipc)."""

    @property
    def name(self) -> str:
        where = f"linux.namespaces[{self.index}] " if self.index >= 0 else ""
        return f"{where}{self.type}" + (f" {self.path}" if self.path else "")


def parse_namespaces(doc: Mapping[str, Any]) -> list[Namespace]:
    """The container's namespaces: those of `linux.namespaces`, plus new mount, uts and ipc ones
    when the spec does not list them. Unknown or repeated types are errors; user and time
    namespaces are not supported yet (Unimplemented)."""
    linux = doc.get("linux") or {}
    if not isinstance(linux, dict):
        raise InvalidArgument("linux must be an object")
    raw = linux.get("namespaces") or []
    if not isinstance(raw, list):
        raise InvalidArgument("linux.namespaces must be a list")
    found: dict[str, Namespace] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InvalidArgument(f"linux.namespaces[{i}]: not an object")
        kind, path = entry.get("type"), entry.get("path") or ""
        if not isinstance(kind, str) or kind not in NAMESPACE_FLAGS:
            raise InvalidArgument(f"linux.namespaces[{i}]: unknown namespace type {kind!r} "
                                  f"(known: {', '.join(NAMESPACE_FLAGS)})")
        if not isinstance(path, str) or (path and not path.startswith("/")):
            raise InvalidArgument(f"linux.namespaces[{i}] {kind}: path {path!r} is not an absolute path")
        if kind in found:
            raise InvalidArgument(f"linux.namespaces[{i}] {kind}: listed twice")
        if kind in UNSUPPORTED_NAMESPACES:
            raise Unimplemented(f"linux.namespaces[{i}] {kind}: {kind} namespaces are not supported yet")
        found[kind] = Namespace(kind, NAMESPACE_FLAGS[kind], path, i)
    for kind in ALWAYS_NEW:
        found.setdefault(kind, Namespace(kind, NAMESPACE_FLAGS[kind]))
    return list(found.values())


@dataclass(frozen=True)
class Device:
    """A device node to create in the container's /dev."""

    path: str
    kind: str
    """"c" (character), "b" (block), "p" (FIFO)."""
    major: int = 0
    minor: int = 0
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


DEFAULT_DEVICES = (
    Device("/dev/null", "c", 1, 3),
    Device("/dev/zero", "c", 1, 5),
    Device("/dev/full", "c", 1, 7),
    Device("/dev/random", "c", 1, 8),
    Device("/dev/urandom", "c", 1, 9),
    Device("/dev/tty", "c", 5, 0),
)
"""What every container's /dev holds (the OCI runtime spec's list)."""
DEFAULT_DEV_LINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
)


def parse_devices(doc: Mapping[str, Any]) -> list[Device]:
    """The default devices, then those of `linux.devices` (one with the same path replaces a default)."""
    linux = doc.get("linux") or {}
    raw = linux.get("devices") or [] if isinstance(linux, dict) else []
    if not isinstance(raw, list):
        raise InvalidArgument("linux.devices must be a list")
    devices = {d.path: d for d in DEFAULT_DEVICES}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InvalidArgument(f"linux.devices[{i}]: not an object")
        path, kind = entry.get("path"), entry.get("type")
        if not isinstance(path, str) or not path.startswith("/dev/"):
            raise InvalidArgument(f"linux.devices[{i}]: path {path!r} is not under /dev")
        if kind not in ("c", "u", "b", "p"):
            raise InvalidArgument(f"linux.devices[{i}] {path}: unknown device type {kind!r}")
        numbers = [entry.get(k, 0) for k in ("major", "minor", "uid", "gid")]
        mode = entry.get("fileMode", 0o666)
        if not all(isinstance(n, int) and n >= 0 for n in (*numbers, mode)):
            raise InvalidArgument(f"linux.devices[{i}] {path}: major, minor, fileMode, uid, gid must be numbers")
        major, minor, uid, gid = numbers
        norm = posixpath.normpath(path)
        devices[norm] = Device(norm, "c" if kind == "u" else kind, major, minor, mode & 0o7777, uid, gid)
    return list(devices.values())


def path_list(doc: Mapping[str, Any], key: str) -> list[str]:
    """`linux.maskedPaths` or `linux.readonlyPaths`: absolute, normalized container paths."""
    linux = doc.get("linux") or {}
    raw = linux.get(key) or [] if isinstance(linux, dict) else []
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise InvalidArgument(f"linux.{key} must be a list of strings")
    for i, path in enumerate(raw):
        if not path.startswith("/"):
            raise InvalidArgument(f"linux.{key}[{i}] {path!r}: not an absolute path")
    return [posixpath.normpath(p) for p in raw]


def root_readonly(doc: Mapping[str, Any]) -> bool:
    """`root.readonly`."""
    root = doc.get("root") or {}
    value = root.get("readonly", False) if isinstance(root, dict) else False
    if not isinstance(value, bool):
        raise InvalidArgument("root.readonly must be true or false")
    return value


def rootfs_propagation(doc: Mapping[str, Any]) -> int:
    """`linux.rootfsPropagation` as MS_* flags; rprivate when absent."""
    linux = doc.get("linux") or {}
    value = (linux.get("rootfsPropagation") if isinstance(linux, dict) else None) or "rprivate"
    if value not in PROPAGATION_OPTIONS:
        raise InvalidArgument(f"linux.rootfsPropagation {value!r}: want one of {', '.join(PROPAGATION_OPTIONS)}")
    return PROPAGATION_OPTIONS[value]


IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
               "kernel.shmmni", "kernel.shm_rmid_forced")
"""The kernel.* sysctls an IPC namespace has its own copy of (as runc's validator lists them)."""


def parse_sysctl(doc: Mapping[str, Any], namespaces: Sequence[Namespace]) -> tuple[tuple[str, str], ...]:
    """`linux.sysctl` as (key, value) pairs, keys dotted (`net/ipv4/ip_forward` is read as
    `net.ipv4.ip_forward`). Only keys of a namespace the container has are allowed, as runc
    checks them: IPC ones (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*) with an ipc namespace,
    net.* with a network namespace, kernel.domainname with a uts namespace. Whether a joined
    network namespace is the host's own is checked by the worker (it needs the filesystem)."""
    linux = doc.get("linux") or {}
    raw = (linux.get("sysctl") if isinstance(linux, dict) else None) or {}
    if not isinstance(raw, dict):
        raise InvalidArgument("linux.sysctl must be an object of strings")
    types = {ns.type for ns in namespaces}
    settings = []
    for key, value in raw.items():
        if not isinstance(value, str):
            raise InvalidArgument(f"linux.sysctl {key}: value must be a string")
        name = key.replace("/", ".")
        if not all(name.split(".")):  # empty, `a..b`, `net/../x`
            raise InvalidArgument(f"linux.sysctl {key!r}: not a sysctl name")
        if name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
            needed = "ipc"
        elif name.startswith("net."):
            needed = "network"
        elif name == "kernel.domainname":
            needed = "uts"
        elif name == "kernel.hostname":
            raise InvalidArgument(f"linux.sysctl {key}: not allowed: use the spec's hostname")
        else:
            raise InvalidArgument(f"linux.sysctl {key}: not in a separate kernel namespace of the container")
        if needed not in types:
            raise InvalidArgument(f"linux.sysctl {key}: not allowed without a {needed} namespace of the container")
        settings.append((name, value))
    return tuple(settings)


def parse_oom_score_adj(doc: Mapping[str, Any]) -> int | None:
    """`process.oomScoreAdj` (-1000..1000), None when absent."""
    process = doc.get("process") or {}
    value = process.get("oomScoreAdj") if isinstance(process, dict) else None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not -1000 <= value <= 1000:
        raise InvalidArgument(f"process.oomScoreAdj {value!r}: want a number from -1000 to 1000")
    return value


@dataclass(frozen=True)
class ContainerLayout:
    """Everything the worker builds the container's filesystem and namespaces from."""

    namespaces: tuple[Namespace, ...]
    mounts: tuple[Mount, ...]
    devices: tuple[Device, ...]
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    readonly_root: bool
    propagation: int
    hostname: str = ""
    sysctl: tuple[tuple[str, str], ...] = ()
    """`linux.sysctl`, checked: written in the container's namespaces before pivot_root."""
    oom_score_adj: int | None = None

    @property
    def pid_namespace(self) -> Namespace | None:
        return next((ns for ns in self.namespaces if ns.type == "pid"), None)


def container_layout(doc: Mapping[str, Any], bundle: str = "") -> ContainerLayout:
    """All of the above from one config.json document, checked before anything is done."""
    hostname = doc.get("hostname") or ""
    if not isinstance(hostname, str) or len(hostname.encode()) > 64:
        raise InvalidArgument("hostname must be a string of at most 64 bytes")
    namespaces = tuple(parse_namespaces(doc))
    return ContainerLayout(
        namespaces=namespaces,
        mounts=tuple(parse_mounts(doc, bundle)),
        devices=tuple(parse_devices(doc)),
        masked_paths=tuple(path_list(doc, "maskedPaths")),
        readonly_paths=tuple(path_list(doc, "readonlyPaths")),
        readonly_root=root_readonly(doc),
        propagation=rootfs_propagation(doc),
        hostname=hostname,
        sysctl=parse_sysctl(doc, namespaces),
        oom_score_adj=parse_oom_score_adj(doc),
    )
