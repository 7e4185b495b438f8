"""`linux.cgroupsPath` to a cgroup path below a hierarchy's root (pure).

Three forms, as runc and containerd understand them:
- absolute (`/default/hello`): taken from the hierarchy's root;
- relative (`pods/hello`): taken from the supervisor's own cgroup, as runc does;
- systemd (`slice:prefix:name`): `/a.slice/a-b.slice/prefix-name.scope`, and a slice name alone
  (`a-b.slice`, the kubelet's systemd driver's pod cgroup parent): `/a.slice/a-b.slice` (the systemd
  unit is systemd_unit.py's when systemd runs a cgroup v2 host; elsewhere the folder is made directly);
and empty, which becomes `/<namespace>/<id>` as containerd's default spec has it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from wasmvisor.errors import InvalidArgument

DEFAULT_SLICE = "system.slice"


def is_systemd_form(cgroups_path: str) -> bool:
    """Whether `cgroups_path` is runc's systemd `slice:prefix:name` form."""
    return not cgroups_path.startswith("/") and cgroups_path.count(":") == 2


def is_slice_name(cgroups_path: str) -> bool:
    """Whether `cgroups_path` is a systemd slice name alone (`kubepods-besteffort-pod1.slice`)."""
    return cgroups_path.endswith(".slice") and "/" not in cgroups_path and ":" not in cgroups_path


def unit_names(cgroups_path: str) -> tuple[str, str]:
    """(unit, slice) of the systemd form or of a slice name: `s.slice:cri:id` -> (`cri-id.scope`,
    `s.slice`); `a-b.slice` -> (`a-b.slice`, `a.slice`). Expects a path `resolve` accepted."""
    if is_slice_name(cgroups_path):
        stem = cgroups_path[: -len(".slice")]
        return cgroups_path, (stem.rsplit("-", 1)[0] + ".slice" if "-" in stem else "-.slice")
    slice_name, prefix, name = cgroups_path.split(":")
    unit = name if name.endswith(".slice") else (f"{prefix}-{name}.scope" if prefix else f"{name}.scope")
    return unit, slice_name or DEFAULT_SLICE


def expand_slice(slice_name: str) -> str:
    """`a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice` (systemd's nesting of dashed slice names)."""
    if not slice_name.endswith(".slice"):
        raise InvalidArgument(f"slice {slice_name!r} does not end in .slice")
    stem = slice_name[: -len(".slice")]
    if stem == "-":
        return "/"
    if not stem or "/" in stem or stem.startswith("-") or stem.endswith("-") or "--" in stem:
        raise InvalidArgument(f"slice {slice_name!r} is not a valid slice name")
    path, prefix = "", ""
    for part in stem.split("-"):
        prefix = f"{prefix}-{part}" if prefix else part
        path += f"/{prefix}.slice"
    return path


def systemd_path(cgroups_path: str) -> str:
    """The cgroupfs path of the systemd form `slice:prefix:name`."""
    slice_name, _, name = cgroups_path.split(":")
    base = expand_slice(slice_name or DEFAULT_SLICE)
    if not name:
        raise InvalidArgument("the unit name (after the second ':') is empty")
    unit, _ = unit_names(cgroups_path)
    if "/" in unit:
        raise InvalidArgument(f"unit {unit!r} contains '/'")
    return posixpath.join(base, unit)


def resolve(cgroups_path: str, namespace: str, task_id: str, own: Mapping[str, str] | None = None,
            controller: str = "") -> str:
    """The absolute cgroup path (from a hierarchy's root) that `linux.cgroupsPath` names.

    `own` maps controller names to the supervisor's own cgroup (/proc/self/cgroup, "" for the
    unified hierarchy); a relative path is joined to `own[controller]`.
    """
    try:
        if not cgroups_path:
            path = f"/{namespace}/{task_id}"
        elif is_systemd_form(cgroups_path):
            path = systemd_path(cgroups_path)
        elif is_slice_name(cgroups_path):
            path = expand_slice(cgroups_path)
        elif cgroups_path.startswith("/"):
            path = cgroups_path
        else:
            base = (own or {}).get(controller, "/") or "/"
            path = posixpath.join(base, cgroups_path)
        return _checked(path, cgroups_path)
    except InvalidArgument as exc:
        raise InvalidArgument(f"linux.cgroupsPath {cgroups_path}: {exc}") from None


def _checked(path: str, given: str) -> str:
    if "\0" in path:
        raise InvalidArgument("contains a NUL byte")
    if any(part == ".." for part in path.split("/")):
        raise InvalidArgument("'..' is not allowed")
    norm = posixpath.normpath(path)
    if norm == "/":
        raise InvalidArgument("names the root cgroup")
    return norm


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/PID/cgroup -> {controller: path}; the unified hierarchy (`0::/x`) is under key ""."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            found[""] = path
            continue
        for name in controllers.split(","):
            found[name.removeprefix("name=")] = path
    return found
