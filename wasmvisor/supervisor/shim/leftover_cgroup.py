"""Whether the `delete` action may find a cgroup left by its task, decided with only `os` and `_json` loaded.

`delete` runs after every task on containerd 1.6, and almost always the supervisor has removed the
task's cgroup already (or the spec had no `linux` section, so none was made). Importing
`wasmvisor.cgroups` to find that out costs ~30 ms (orjson, ctypes, dataclasses, typing, enum); this
module answers the common case with a few stat calls and leaves the real work (kill what is left,
rmdir every hierarchy) to `wasmvisor.cgroups.remove_for_bundle` when a folder may be there.

The answer errs on the side of "maybe": any cgroupsPath form other than the default and the absolute
ones, or a config.json that does not parse, hands the decision to the full package, which reports
errors as before.
"""

from __future__ import annotations

import os

from wasmvisor.supervisor.shim.fastload import loads

ROOT = "/sys/fs/cgroup"


def cgroup_path(cgroups_path: str, namespace: str, task_id: str) -> str | None:
    """The cgroup path from a hierarchy's root for the default (`""` -> `/NS/ID`) and absolute forms of
    `linux.cgroupsPath`; None for the forms this module leaves to `wasmvisor.cgroups.paths` (relative,
    systemd, or anything unusual)."""
    path = cgroups_path or f"/{namespace}/{task_id}"
    if not path.startswith("/") or ":" in path or "\0" in path:
        return None
    parts = [part for part in path.split("/") if part and part != "."]
    if not parts or ".." in parts:
        return None
    return "/" + "/".join(parts)


def may_exist(bundle: str, namespace: str, task_id: str, root: str = ROOT) -> bool:
    """False when the task of `bundle` certainly has no cgroup folder left under `root`: no config.json,
    no `linux` section in it, or no folder at the path it names in any hierarchy (v1 or v2)."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False  # no bundle left: nothing was made from it
    except OSError:
        return True
    if b'"linux"' not in data:
        return False  # a key is written with its quotes: no linux section, and no cgroup made for the spec
    try:
        raw = loads(data)
    except ValueError:
        return True
    if not isinstance(raw, dict) or "linux" not in raw:
        return False
    linux = raw["linux"]
    if linux is None:
        linux = {}
    if not isinstance(linux, dict):
        return True
    given = linux.get("cgroupsPath")
    path = cgroup_path(given or "", namespace, task_id) if isinstance(given, str | None) else None
    if path is None:
        return True
    relative = path.lstrip("/")
    # v2: ROOT/<path>; v1: ROOT/<controller>/<path> for each hierarchy (and co-mount symlinks).
    if os.path.isdir(os.path.join(root, relative)):
        return True
    try:
        hierarchies = os.listdir(root)
    except OSError:
        return True
    return any(os.path.isdir(os.path.join(root, name, relative)) for name in hierarchies)
