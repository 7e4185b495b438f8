"""The pure half of `wasmvisor doctor`: each check takes what was read from the node and says whether
it is right and, when it is not, how to fix it. doctor.py reads the node and calls these.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RUNTIME_TYPE = "io.containerd.wasmvisor.v1"
SHIM_BINARY = "containerd-shim-wasmvisor-v1"
OLDEST_CONTAINERD = (1, 6)
MIN_FREE_BYTES = 256 * 1024 * 1024
"""Below this the compiled-module cache cannot hold much (a compiled module is a few MiB)."""

CRI_1X = "io.containerd.grpc.v1.cri"
CRI_2X = "io.containerd.cri.v1.runtime"


@dataclass(frozen=True)
class Finding:
    """One line of the report: `ok` or not, what was seen, and the fix when not ok."""

    check: str
    ok: bool
    detail: str
    fix: str = ""


def containerd_version(text: str) -> tuple[int, ...] | None:
    """(major, minor, patch) from `containerd --version` output, None when it names none."""
    found = re.search(r"\bv?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in found.groups()) if found else None


def check_containerd(address: str, pid: int | None, version: tuple[int, ...] | None) -> Finding:
    if pid is None:
        return Finding("containerd", False, f"nothing listens on {address}",
                       "start containerd (systemctl start containerd), or pass its socket with --address")
    shown = ".".join(map(str, version)) if version else "unknown version"
    if version is None or version[:2] < OLDEST_CONTAINERD:
        return Finding("containerd", False, f"{shown} running (pid {pid}); wasmvisor needs 1.6 or later",
                       "install containerd 1.6, 1.7 or 2.x")
    return Finding("containerd", True, f"{shown} running (pid {pid}, {address})")


def config_path_of(argv: Sequence[str]) -> str | None:
    """The config file named on containerd's command line (`--config F`, `-c F`, `--config=F`)."""
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c", "-config") and i + 1 < len(argv):
            return argv[i + 1]
        for prefix in ("--config=", "-c=", "-config="):
            if arg.startswith(prefix):
                return arg[len(prefix):]
    return None


def _table(doc: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    for key in keys:
        value = doc.get(key)
        if not isinstance(value, Mapping):
            return {}
        doc = value
    return doc


def cri_runtimes(doc: Mapping[str, Any]) -> tuple[str, bool, Mapping[str, Any]]:
    """(CRI plugin id, whether it is disabled, its runtimes table) for the config's version
    (3: containerd 2.x; 2: 1.6/1.7; 1 or none: the old `plugins.cri` form)."""
    version = doc.get("version", 1)
    plugin = CRI_2X if version == 3 else CRI_1X if version == 2 else "cri"
    disabled = doc.get("disabled_plugins", [])
    off = isinstance(disabled, list) and any(p in disabled for p in (plugin, CRI_1X, "cri"))
    return plugin, off, _table(doc, "plugins", plugin, "containerd", "runtimes")


def check_config(path: str, doc: Mapping[str, Any] | None, error: str = "", handler: str = "") -> Finding:
    """Whether the config registers the runtime as a CRI handler (named `handler`, if given)."""
    example = f'[plugins."{CRI_2X}".containerd.runtimes.wasmvisor] (config version 3, containerd 2.x) or ' \
              f'[plugins."{CRI_1X}".containerd.runtimes.wasmvisor] (version 2, containerd 1.x) with ' \
              f'runtime_type = "{RUNTIME_TYPE}", then restart containerd'
    if doc is None:
        return Finding("config", False, f"{path}: {error}", "fix the file, or name the right one with --config")
    plugin, disabled, runtimes = cri_runtimes(doc)
    ours = sorted(name for name, table in runtimes.items()
                  if isinstance(table, Mapping) and table.get("runtime_type") == RUNTIME_TYPE)
    if disabled:
        return Finding("config", True, f"{path}: the CRI plugin is disabled: only `ctr run --runtime "
                                       f"{RUNTIME_TYPE}` uses wasmvisor (no handler needed)")
    if handler and handler not in ours:
        other = runtimes.get(handler)
        seen = f"runtime_type {other.get('runtime_type')!r}" if isinstance(other, Mapping) else "absent"
        return Finding("config", False, f"{path}: CRI handler {handler!r} is {seen}",
                       f'set [plugins."{plugin}".containerd.runtimes.{handler}] runtime_type = "{RUNTIME_TYPE}" '
                       "and restart containerd")
    if not ours:
        return Finding("config", False, f"{path}: no CRI runtime handler has runtime_type {RUNTIME_TYPE!r}",
                       f"add {example}")
    # sandboxer = "shim" (2.x) is served too: the supervisor is the pod (docs/kubernetes.md).
    shim = [name for name in ours if _table(runtimes, name).get("sandboxer") == "shim"]
    if shim:
        return Finding("config", True, f"{path}: CRI handler(s) {', '.join(ours)} -> {RUNTIME_TYPE} "
                                       f"({', '.join(shim)} with sandboxer = \"shim\": no pause container)")
    return Finding("config", True, f"{path}: CRI handler(s) {', '.join(ours)} -> {RUNTIME_TYPE}")


def shim_candidates(cwd: str, path_var: str, exe_dir: str) -> list[str]:
    """Where containerd looks for the shim binary, in its order: its working directory, its PATH, the
    folder of its own executable."""
    folders = [cwd, *[d for d in path_var.split(os.pathsep) if d], exe_dir]
    return [os.path.join(d, SHIM_BINARY) for d in dict.fromkeys(folders) if d]


def check_shim(found: str | None, path_var: str, ours: str, found_version: str, our_version: str) -> Finding:
    """Whether containerd finds the shim and whether it is this build (`-v` says the same)."""
    link = f"ln -sf {ours} /usr/local/bin/{SHIM_BINARY} (or into another folder of containerd's PATH)"
    if found is None:
        return Finding("shim", False, f"{SHIM_BINARY} is not on containerd's PATH ({path_var})", link)
    if os.path.realpath(found) == os.path.realpath(ours) or found_version == our_version:
        return Finding("shim", True, f"{found} is this build")
    first = (found_version.strip().splitlines() or ["no output from -v"])[-1].strip()
    return Finding("shim", False, f"{found} is another build ({first}; this one: "
                                  f"{our_version.strip().splitlines()[-1].strip()})", link)


def check_cgroups(mode: str) -> Finding:
    if mode == "none":
        return Finding("cgroups", False, "no cgroup file system at /sys/fs/cgroup",
                       "mount cgroup2 on /sys/fs/cgroup (or the v1 controllers)")
    return Finding("cgroups", True, mode)


def check_cache(path: str, writable: str, locks: str, free: int | None, exists: bool = True) -> Finding:
    """`writable` / `locks`: "" when they work (in `path`, or in the folder it will be made in when it does
    not exist yet), else why not."""
    fix = f"make {path} a writable local folder (or set WASMVISOR_CACHE_DIR in containerd's environment)"
    if writable:
        return Finding("cache", False, f"{path}: not writable: {writable}", fix)
    if locks:
        return Finding("cache", False, f"{path}: flock does not work: {locks}", fix)
    if free is not None and free < MIN_FREE_BYTES:
        return Finding("cache", False, f"{path}: {free // 2**20} MiB free", f"free space on the file system of {path}")
    shown = f"{free // 2**20} MiB free" if free is not None else "free space unknown"
    made = "" if exists else " (not made yet: the first start makes it)"
    return Finding("cache", True, f"{path}{made}: writable, flock works, {shown}")


def check_kernel(status: Mapping[str, str], seccomp_actions: str | None) -> Finding:
    """Seccomp filters and no_new_privs, as the worker's confinement uses them (from /proc/self/status
    and /proc/sys/kernel/seccomp/actions_avail)."""
    missing = []
    if "Seccomp" not in status or seccomp_actions is None:
        missing.append("seccomp filters (CONFIG_SECCOMP_FILTER)")
    elif not {"kill_process", "errno"} <= set(seccomp_actions.split()):
        missing.append(f"seccomp actions kill_process and errno (has: {seccomp_actions.strip()})")
    if "NoNewPrivs" not in status:
        missing.append("no_new_privs (Linux >= 3.5)")
    if missing:
        return Finding("kernel", False, "missing: " + "; ".join(missing), "use a kernel with these features")
    return Finding("kernel", True, "seccomp filters and no_new_privs available")
