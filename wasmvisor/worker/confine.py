"""The confinement of a wasm guest's worker: what the worker takes away from itself before the guest's
first instruction, so that a guest that broke out of wasm into native code would find nothing more.

Native containers keep runc's semantics and none of this. A wasm worker, in this order (the one
place it is written down; wasmvisor.worker.main.serve calls the steps):

At Create, after the engine, the module and the stdio are loaded through host paths:
1. `hide_system_mounts(root)`, before pivot_root: /proc and /sys of the container's root are
   detached, and every other mount but /dev becomes `nodev`. The guest's `/` preopen then reaches
   no procfs (no /proc/self/mem, no /proc/self/fd/N, no /proc/1/root), no sysfs and no device node
   but those of the spec's /dev. The worker needs neither after this: it already holds all it uses.
2. Container.seal: pivot_root, hostname, and the identity of `confined_process(process)`: the
   spec's uid, gids and rlimits, but no capability in any set (bounding, effective, permitted,
   inheritable, ambient) and no_new_privs, whatever the spec's `process` says: a wasm guest makes
   no system call of its own, so capabilities could only ever serve an escaped one. Capabilities
   are per thread: `before_seal` and `after_seal` have the init thread of a pid namespace drop its
   own. wasmtime compiles in a child process (engines/compile_child.py), so no compile thread that
   kept its capabilities is left; the threads it starts for WASI while the guest runs inherit the
   empty sets.

At Start, after `Started` is sent:
3. `close_worker_fds(log_fd)`: the log FIFO goes (the worker's last words travel in `Exited`), so
   that only the guest's stdio (0, 1, 2) and the pipe to the supervisor stay open.
4. `install_filter()`: the seccomp allow-list of wasmvisor.worker.guest_filter, on every thread.
5. The guest runs.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from wasmvisor.errors import Internal
from wasmvisor.ipc.channel import Channel
from wasmvisor.linux import mountinfo, syscalls
from wasmvisor.linux.mount_options import MS_BIND, MS_NODEV, MS_REMOUNT, PER_MOUNT_FLAGS
from wasmvisor.worker import capabilities
from wasmvisor.worker.container import Container
from wasmvisor.worker.guest_filter import guest_filter
from wasmvisor.worker.last_words import LastWords, hard_stop_after

log = logging.getLogger(__name__)

HIDDEN = ("/proc", "/sys")
"""Paths of the container whose mounts a wasm guest never sees."""
DEVICES = "/dev"
"""The one tree whose mounts keep device nodes usable (the spec's /dev: null, zero, urandom...)."""
MOUNT_ATTR_NODEV = 0x4
PR_SET_NO_NEW_PRIVS = 38


def hidden_mounts(root: str, points: list[str]) -> list[str]:
    """The mount points to detach so that nothing of HIDDEN stays under `root`: the topmost mounts at or
    below each (a detach takes the mounts below it along), once per stacked mount (pure)."""
    out: list[str] = []
    for path in HIDDEN:
        below = mountinfo.points_under(os.path.join(root, path.lstrip("/")), points)
        tops = [p for p in below if not any(p != q and mountinfo.is_under(p, q) for q in below)]
        out += tops
    return out


def nodev_mounts(root: str, points: list[str]) -> list[str]:
    """The mount points under `root` that become `nodev`: all but those of /dev and HIDDEN, each once (pure)."""
    keep = [os.path.join(root, path.lstrip("/")) for path in (DEVICES, *HIDDEN)]
    return list(dict.fromkeys(p for p in mountinfo.points_under(root, points)
                              if not any(mountinfo.is_under(p, k) for k in keep)))


def hide_system_mounts(root: str) -> None:
    """Step 1 (module docstring), with `root` the container's root as a host path."""
    points = mountinfo.mount_points()
    hidden = hidden_mounts(root, points)
    for point in hidden:
        syscalls.umount2(point, syscalls.MNT_DETACH)
    nodev = nodev_mounts(root, points)
    for point in nodev:
        _set_nodev(point)
    log.debug("guest view: %d mounts detached (%s), %d made nodev", len(hidden), ", ".join(hidden) or "none",
              len(nodev))


def _set_nodev(point: str) -> None:
    try:
        syscalls.mount_setattr(point, MOUNT_ATTR_NODEV, flags=syscalls.AT_SYMLINK_NOFOLLOW)
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise Internal(f"guest view: cannot make {point} nodev: {os.strerror(exc.errno or 0)}") from None
        # Before Linux 5.12: a bind remount, repeating the flags the mount has.
        kept = os.statvfs(point).f_flag & PER_MOUNT_FLAGS
        syscalls.mount(None, point, None, MS_REMOUNT | MS_BIND | MS_NODEV | kept)


def confined_process(process: Mapping[str, Any]) -> dict[str, Any]:
    """Step 2: the spec's `process` with no capability in any set and no_new_privs, which
    Container.seal then applies in runc's order (the bounding set is emptied while CAP_SETPCAP is
    still held, then the uid changes, then capset) (pure)."""
    empty: dict[str, list[str]] = {name: [] for name in capabilities.CAP_SETS}
    return {**process, "capabilities": empty, "noNewPrivileges": True}


def before_seal(box: Container) -> None:
    """Step 2, first half: the init thread empties its bounding and ambient sets while it still holds
    CAP_SETPCAP (its effective set stays: glibc changes the uid of every thread at once, and aborts
    the process when one thread may not)."""
    box.run_on_init_thread(capabilities.drop_bounding_and_ambient)


def after_seal(box: Container) -> None:
    """Step 2, second half: the init thread empties its effective, permitted and inheritable sets and
    sets no_new_privs (the main thread's are so by its identity; the filter's TSYNC would set the flag
    too, but a guest the wasmtime CLI runs gets no filter)."""
    box.run_on_init_thread(_clear_init_thread)


def _clear_init_thread() -> None:
    capabilities.clear_sets()
    syscalls.prctl(PR_SET_NO_NEW_PRIVS, 1)


def close_worker_fds(log_fd: int) -> None:
    """Step 3: close the worker's log FIFO, the one fd it opened for itself beyond the guest's stdio
    and its pipe (detach_from_zygote closed everything else it inherited)."""
    os.close(log_fd)


def install_filter() -> None:
    """Step 4: the guest allow-list on every thread of the worker."""
    guest_filter().load()


def at_start(channel: Channel, log_fd: int, time_limit: float | None, source: str, *,
             seccomp_filter: bool = True) -> Callable[[], LastWords]:
    """Steps 3 and 4 with what comes with them, for guest_run.serve_start to call right before the
    guest runs: the worker's log goes to a `LastWords` (for `Exited.note`), the log FIFO closes, the
    filter goes on (not for a guest a program of its own runs: `seccomp_filter=False`, see
    docs/internals.md "Confinement"), and a time limit gets its backstop."""

    def start() -> LastWords:
        last_words = LastWords()
        logging.getLogger().handlers[:] = [last_words]  # the log FIFO closes now
        close_worker_fds(log_fd)
        if seccomp_filter:
            install_filter()
        if time_limit is not None:
            hard_stop_after(channel, time_limit, source)
        return last_words

    return start
