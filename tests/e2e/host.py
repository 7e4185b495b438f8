"""What end-to-end tests inspect on the host, and what teardown cleans: processes by title, process
trees, mounts, shim sockets, a cgroup's folders, cgroups left by runc."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from wasmvisor.linux import mountinfo

SHIM_SOCKET_DIR = Path("/run/containerd/s")
"""Where shims put their sockets (runc's convention; wasmvisor follows it), for any containerd."""


def process_titles() -> dict[int, str]:
    """pid -> command line as `ps` shows it (setproctitle titles included) for every process. A live
    process whose command line reads empty is in the middle of an exec (a worker exec'ing the compiled
    runner keeps its title, worker/runner_exec.py): it is read again, for up to a second."""
    titles: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        raw: bytes | None = None
        for _ in range(100):
            try:
                raw = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                raw = None
                break
            if raw or _never_titled(entry.path):
                break
            time.sleep(0.01)
        if raw is not None:
            titles[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return titles


def _never_titled(proc_dir: str) -> bool:
    """Whether an empty command line is final: a zombie, a process gone, or a kernel thread (PF_KTHREAD,
    bit 21 of /proc/PID/stat's flags)."""
    try:
        fields = Path(proc_dir, "stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] == "Z" or bool(int(fields[6]) & 0x00200000)
    except (OSError, IndexError, ValueError):
        return True


def processes_titled(title: str) -> list[int]:
    """Pids of live processes titled `title` (e.g. `wasmvisor-worker NS/ID`; more words may follow)."""
    return sorted(
        pid for pid, t in process_titles().items() if (t == title or t.startswith(title + " ")) and is_alive(pid)
    )


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (parents first)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(_children(current))
    return tree


def kill_pids(pids: Sequence[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def mounts_under(path: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo)."""
    return mountinfo.points_under(os.path.abspath(path), mountinfo.mount_points())


def shim_socket_path(address: str, namespace: str, group: str) -> Path:
    """Where a shim of `group` listens: /run/containerd/s/<sha256(address/namespace/group)>."""
    return SHIM_SOCKET_DIR / hashlib.sha256(os.path.join(address, namespace, group).encode()).hexdigest()


def socket_is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def remove_empty_cgroups(namespace: str) -> None:
    """runc leaves empty cgroup folders `/<namespace>[/<id>]` behind; remove the empty ones."""
    root = Path("/sys/fs/cgroup")
    candidates = [root / "unified" / namespace, root / namespace]
    with contextlib.suppress(OSError):
        candidates += [c / namespace for c in root.iterdir() if c.is_dir() and not c.is_symlink()]
    for top in candidates:
        if not top.is_dir():
            continue
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIFIED = (CGROUP_ROOT / "cgroup.controllers").exists()
"""cgroup v2 only (a unified hierarchy at /sys/fs/cgroup, as systemd nodes boot today), else v1 (hybrid)."""


CGROUP_DRIVERS = ("cgroupfs", "systemd")
CGROUP_DRIVER_ENV = "WASMVISOR_TEST_CGROUP_DRIVER"


def systemd_is_init() -> bool:
    """systemd is PID 1 (and says so in /run/systemd/system, as sd_booted(3) checks)."""
    try:
        init = Path("/proc/1/comm").read_text().strip()
    except OSError:
        return False
    return init == "systemd" and Path("/run/systemd/system").is_dir()


def cgroup_driver() -> str:
    """The kubelet's and containerd's cgroup driver for this host, as a node is set up: `systemd` where
    systemd is PID 1 on cgroup v2, else `cgroupfs`; WASMVISOR_TEST_CGROUP_DRIVER chooses instead."""
    chosen = os.environ.get(CGROUP_DRIVER_ENV, "")
    if chosen:
        if chosen not in CGROUP_DRIVERS:
            raise ValueError(f"{CGROUP_DRIVER_ENV}={chosen!r}: expected one of {', '.join(CGROUP_DRIVERS)}")
        return chosen
    return "systemd" if UNIFIED and systemd_is_init() else "cgroupfs"


def cgroup_dirs(path: str) -> list[Path]:
    """The folders of cgroup `path` that exist: one on cgroup v2, one per mounted hierarchy on v1."""
    root = CGROUP_ROOT
    if UNIFIED:
        candidates = [root / path.strip("/")]
    else:
        candidates = [c / path.strip("/") for c in root.iterdir() if c.is_dir() and not c.is_symlink()]
    return [c for c in candidates if c.is_dir()]
