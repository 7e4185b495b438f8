"""The worker's wait for its task's cgroup (`Configure.await_join`).

The supervisor moves a new worker into its task's cgroup while the worker reads its Configure, loads
the spec and enters its namespaces; that write may wait 5-20 ms for the kernel
(wasmvisor/cgroups/migration.py). The worker waits for the supervisor's `Joined` only before its
container process exists (forked into a pid namespace, which is then born in the cgroup, or the worker
itself going on), so that process and everything the guest loads and allocates are accounted there.
"""

from __future__ import annotations

from wasmvisor.errors import FailedPrecondition
from wasmvisor.ipc import messages
from wasmvisor.ipc.channel import Channel


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
