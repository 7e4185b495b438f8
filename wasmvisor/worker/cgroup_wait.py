"""The worker's wait for its task's cgroup (`Configure.await_join`).

The supervisor moves a new worker into its task's cgroup while the worker reads its Configure, loads
the spec and enters its namespaces; that write may wait 5-20 ms for the kernel
(wasmvisor/cgroups/migration.py). The worker waits for the supervisor's `Joined` only before its
container process exists (forked into a pid namespace, which is then born in the cgroup, or the worker
itself going on), so that process and everything the guest loads and allocates are accounted there.
With a cgroup namespace the wait comes before the namespaces are entered (`wait_before_namespaces`).
"""

from __future__ import annotations

from collections.abc import Sequence

from wasmvisor.errors import FailedPrecondition
from wasmvisor.ipc import messages
from wasmvisor.ipc.channel import Channel
from wasmvisor.worker.spec_linux import CLONE_NEWCGROUP, Namespace


def wait_before_namespaces(namespaces: Sequence[Namespace]) -> bool:
    """Whether the worker must be in its cgroup before it enters its namespaces, not after: a new
    cgroup namespace takes the cgroup its creator is in as its root, which must be the task's (as runc
    joins the cgroup before it unshares one) (pure)."""
    return any(ns.flag == CLONE_NEWCGROUP for ns in namespaces)


def wait_for_cgroup(channel: Channel, config: messages.Configure) -> None:
    """Return once the supervisor said `Joined` (at once when the Configure does not ask to wait)."""
    if not config.await_join:
        return
    msg = channel.receive()
    if isinstance(msg, messages.Joined):
        return
    if msg is None:
        raise FailedPrecondition(f"task {config.id}: the supervisor closed the pipe before the worker was in its "
                                 "cgroup")
    raise messages.ProtocolError(f"message {msg.kind!r} before 'joined' (the worker waits for its cgroup)")
