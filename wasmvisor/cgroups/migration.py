"""Warm the kernel's cgroup migration lock before a task's worker joins its cgroup.

Every write to a `cgroup.procs` file takes the kernel's one cgroup_threadgroup_rwsem for writing (on v1
and v2 alike). That percpu rwsem moves its readers to a slow path through rcu_sync, and when it has been
idle it first waits for a whole RCU grace period: the first migration after a quiet moment costs 5-20 ms
on this kind of machine, the next ones ~0.05 ms (measured: 6-19 ms, then 0.04-0.2 ms). It was the
largest single step of Create: the worker waited for it before it got its Configure. Now the worker gets
its Configure at once and waits only before its container process exists (Configure.await_join, the
supervisor's debug line "worker N in its cgroup X ms after its Configure").

`prime` starts that grace period early, on a thread, with a migration that changes nothing (this
process into the cgroup it is already in), while Create mounts the rootfs and forks the worker; the real
join then waits only for what is left of it (measured standalone with a 10 ms lead: 6-9 ms -> 0.5-3 ms;
in Create, where the lead is ~6 ms, the worker's configure came 6-11 ms after its fork instead of 17-19).
It must come after the task's cgroup is made: the kernel holds the cgroup mutex, which mkdir needs,
through the wait. runc pays the same wait when it puts its init process in the container's cgroup.
Best effort: where the write fails, nothing is lost but the head start.
"""

from __future__ import annotations

import os
import threading

from wasmvisor.cgroups.paths import parse_proc_cgroup

ROOT = "/sys/fs/cgroup"


def own_procs_file(proc_cgroup: str, root: str = ROOT) -> str | None:
    """The `cgroup.procs` of a cgroup this process is in, from its /proc/self/cgroup text: the
    unified one on v2, else the first v1 hierarchy mounted under `root`; None when there is none."""
    own = parse_proc_cgroup(proc_cgroup)
    if "" in own and os.path.exists(os.path.join(root, "cgroup.procs")):
        return os.path.join(root, own[""].lstrip("/"), "cgroup.procs")
    for controller, path in own.items():
        if controller and os.path.isdir(os.path.join(root, controller)):
            return os.path.join(root, controller, path.lstrip("/"), "cgroup.procs")
    return None


def _rejoin(path: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    except OSError:
        pass


def prime(root: str = ROOT) -> threading.Thread | None:
    """Start a no-op migration of this process on a daemon thread; the thread, or None when there
    is no cgroup file to write."""
    try:
        with open("/proc/self/cgroup") as f:
            path = own_procs_file(f.read(), root)
    except OSError:
        return None
    if path is None:
        return None
    thread = threading.Thread(target=_rejoin, args=(path,), name="wasmvisor-cgroup-prime", daemon=True)
    thread.start()
    return thread
