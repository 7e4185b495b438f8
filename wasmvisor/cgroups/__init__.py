"""A container's cgroup from its OCI spec: `linux.cgroupsPath` and `linux.resources`, on cgroup v1
(one hierarchy per controller, as on this project's hosts) and v2 (the unified hierarchy).

`open_cgroup` picks the hierarchy as containerd does: v2 when /sys/fs/cgroup itself is a cgroup2
filesystem, else v1. A systemd-form path on a v2 host that systemd runs is a systemd unit
(systemd_unit.py: a transient scope, as runc's systemd driver makes); on v1 (hybrid) and without
systemd the same path is a folder made directly, as before. The supervisor creates the cgroup and
applies the resources at Create, puts the worker in it as soon as it is forked, and removes it at
Delete; `remove_for_bundle` does the same cleanup for the `delete` action, from the bundle's config.json alone.

May import: `errors`, `linux`, the generated cgroups metrics protos and jeepney (systemd_bus.py only,
imported when a systemd unit is used) only (the bottom layer).
"""

from __future__ import annotations

import os
from typing import Any

from wasmvisor.cgroups.base import Cgroup
from wasmvisor.cgroups.paths import is_slice_name, is_systemd_form, parse_proc_cgroup, resolve, unit_names
from wasmvisor.cgroups.resources import Resources
from wasmvisor.linux import syscalls

__all__ = ["Cgroup", "Resources", "detect_version", "open_cgroup", "remove_for_bundle", "spec_cgroup"]

ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_SUPER_MAGIC = 0x27E0EB
TMPFS_MAGIC = 0x01021994


def fs_type(path: str) -> int:
    """statfs(2)'s f_type of `path` (what `stat -f -c %t` shows), 0 when it cannot be read."""
    try:
        return syscalls.statfs_type(path)
    except OSError:
        return 0


def detect_version(root: str = ROOT) -> int:
    """2 when `root` is a cgroup2 mount (unified), 1 for a v1 or hybrid layout, 0 for none."""
    kind = fs_type(root)
    if kind == CGROUP2_SUPER_MAGIC:
        return 2
    if kind in (TMPFS_MAGIC, CGROUP_SUPER_MAGIC) and os.path.isdir(os.path.join(root, "memory")):
        return 1
    return 0


def _own_cgroups() -> dict[str, str]:
    try:
        with open("/proc/self/cgroup") as f:
            return parse_proc_cgroup(f.read())
    except OSError:
        return {}


def open_cgroup(cgroups_path: str, namespace: str, task_id: str, *, root: str = ROOT,
                version: int | None = None, systemd: bool | None = None) -> Cgroup | None:
    """The cgroup `linux.cgroupsPath` names (not created yet); None when the host has no cgroups.

    `version` forces the hierarchy (tests use fake trees); by default it is detected. `systemd` says
    whether systemd runs the host (by default: /run/systemd/system exists and `root` is the real one).
    """
    from wasmvisor.cgroups import systemd_bus, v1, v2

    if version is None:
        version = detect_version(root)
    if systemd is None:
        systemd = root == ROOT and systemd_bus.systemd_runs_host()
    unit_form = is_systemd_form(cgroups_path) or is_slice_name(cgroups_path)
    relative = bool(cgroups_path) and not cgroups_path.startswith("/") and ":" not in cgroups_path \
        and not unit_form
    own = _own_cgroups() if relative else {}
    if version == 2 and systemd and unit_form:
        from wasmvisor.cgroups.systemd_unit import SystemdUnitCgroup

        path = resolve(cgroups_path, namespace, task_id, own, "")
        unit, slice_name = unit_names(cgroups_path)
        return SystemdUnitCgroup(path, root, unit=unit, slice_name=slice_name, given=cgroups_path)
    if version == 2:
        return v2.V2Cgroup(resolve(cgroups_path, namespace, task_id, own, ""), root, given=cgroups_path)
    if version == 1:
        mounts = v1.hierarchies(root)
        path = resolve(cgroups_path, namespace, task_id, own, "memory")
        paths = {c: resolve(cgroups_path, namespace, task_id, own, c) for c in mounts} if relative else None
        return v1.V1Cgroup(path, mounts, given=cgroups_path, paths=paths)
    return None


def spec_cgroup(raw: Any) -> tuple[str, Resources]:
    """(`linux.cgroupsPath`, parsed `linux.resources`) of a config.json document."""
    from wasmvisor.errors import InvalidArgument

    linux = raw.get("linux") if isinstance(raw, dict) else None
    if linux is None:
        return "", Resources()
    if not isinstance(linux, dict):
        raise InvalidArgument("linux: not a JSON object")
    path = linux.get("cgroupsPath") or ""
    if not isinstance(path, str):
        raise InvalidArgument(f"linux.cgroupsPath: {path!r} is not a string")
    return path, Resources.parse(linux.get("resources"))


def remove_for_bundle(bundle: str, namespace: str, task_id: str, *, root: str = ROOT) -> bool:
    """Kill what is left in the cgroup of the task whose bundle is `bundle`, and remove it (the
    `delete` action's cleanup). True if a cgroup was there; raises a ShimError if it stays."""
    import orjson

    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = orjson.loads(f.read())
    except FileNotFoundError:
        return False  # no bundle left: nothing was made from it
    if not isinstance(raw, dict) or "linux" not in raw:
        return False  # the supervisor makes no cgroup for such a spec
    cgroups_path, _ = spec_cgroup(raw)
    cgroup = open_cgroup(cgroups_path, namespace, task_id, root=root)
    if cgroup is None or not cgroup.exists():
        return False
    cgroup.kill_all()
    cgroup.remove()
    return True
