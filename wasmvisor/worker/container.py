"""The container a worker builds around its guest, as runc or youki would from the bundle's spec:
namespaces (`enter`, which may fork: see wasmvisor.worker.namespaces), the filesystem (`build`,
wasmvisor.worker.rootfs), then `seal`: pivot_root, hostname, identity.

Order in the worker (wasmvisor.worker.main.serve): enter, build, load the module and open the
stdio through host paths, seal. Everything used after `seal` must be loaded before it: the old
root (with the venv's Python files) is gone afterwards.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wasmvisor.linux import syscalls
from wasmvisor.spec import Spec
from wasmvisor.worker import identity, sysctl
from wasmvisor.worker.cgroup_wait import wait_before_namespaces
from wasmvisor.worker.namespaces import RELAYED_SIGNALS, InitSignals, enter_namespaces, fork_container_process
from wasmvisor.worker.rootfs import build_rootfs, enter_root, set_hostname
from wasmvisor.worker.spec_linux import ContainerLayout, container_layout

log = logging.getLogger(__name__)


@dataclass
class Container:
    """One container's setup state in its worker."""

    layout: ContainerLayout
    root: str
    """The container's root as a host path (until `seal`)."""
    pid: int
    """The container process's pid as the host sees it (what Ready and Started report)."""
    relayed: bool = False
    """Whether a relay process (pid namespace) is this process's parent."""
    init_signals: InitSignals | None = field(default=None, repr=False)

    @classmethod
    def enter(cls, spec: Spec, bundle: str, root: str, relay_title: str, close_in_relay: Iterable[int],
              on_signal: Callable[[int], object], before_container: Callable[[], object] = lambda: None) -> Container:
        """Check the spec's container parts, then enter the namespaces. With a pid namespace this
        forks: the caller continues in the container process (the relay never returns).
        `on_signal(sig)` reports a guest signal taken by PID 1 (see namespaces.InitSignals);
        `before_container()` runs once the namespaces are entered (before, with a cgroup namespace),
        before the container process exists (the worker waits there for its cgroup: worker/cgroup_wait.py)."""
        layout = container_layout(spec.raw, bundle)
        sysctl.check_network_namespace(layout.sysctl, layout.namespaces)
        warn_unapplied_security_labels(spec.raw.get("process") or {})
        early = wait_before_namespaces(layout.namespaces)
        if early:
            before_container()
        enter_namespaces(layout.namespaces)
        log.debug("namespaces: %s", ", ".join(ns.name for ns in layout.namespaces))
        if not early:
            before_container()
        if layout.pid_namespace is None:
            return cls(layout, root, os.getpid())
        pid = fork_container_process(relay_title, close_in_relay)
        box = cls(layout, root, pid, relayed=True)
        if InitSignals.needed():
            box.init_signals = InitSignals(on_signal)
            box.init_signals.start()
        log.debug("container process %d in its pid namespace (pid %d there)", pid, os.getpid())
        return box

    def build(self) -> None:
        """Mount the container's filesystem under its root (still reached by its host path)."""
        build_rootfs(self.root, self.layout)
        log.debug("root %s built: %d mounts", self.root, len(self.layout.mounts))

    def seal(self, process: Mapping[str, Any], pivot: bool = True) -> None:
        """Write the sysctls and oom_score_adj (in the container's namespaces, with the
        privileges still held), pivot_root into the root, set the hostname and the process's
        identity. `pivot=False` keeps the worker's root: for a guest run by a program that is not in
        the container's root (engines.base.ProgramGuest), which preopens the root by its path."""
        sysctl.write_sysctl(self.layout.sysctl)
        sysctl.write_oom_score_adj(self.layout.oom_score_adj)
        if pivot:
            enter_root(self.root, self.layout.propagation)
            self.root = "/"
        set_hostname(self.layout.hostname)
        identity.apply_identity(process)
        log.debug("in the container's root%s", f" (hostname {self.layout.hostname})" if self.layout.hostname else "")
        if self.relayed:
            # A change of credentials clears the parent-death signal: set it again.
            syscalls.set_parent_death_signal(signal.SIGKILL)

    def run_on_init_thread(self, step: Callable[[], None]) -> None:
        """Run `step` on the process's other Python thread, the init thread of a pid namespace, if
        there is one (for what the kernel keeps per thread: capabilities)."""
        if self.init_signals is not None:
            self.init_signals.run_on_thread(step)

    def guest_signal_mask(self) -> set[int]:
        """The signals to keep blocked while the guest runs (those PID 1's thread takes)."""
        return set(RELAYED_SIGNALS) if self.init_signals is not None else set()


SECURITY_LABELS = ("apparmorProfile", "selinuxLabel")


def warn_unapplied_security_labels(process: Mapping[str, Any]) -> list[str]:
    """Log a warning for each LSM label of the spec's process, which wasmvisor does not apply
    (as runc on a host without AppArmor or SELinux ignores them); returns the keys warned of."""
    found = [key for key in SECURITY_LABELS if isinstance(process, Mapping) and process.get(key)]
    for key in found:
        log.warning("process.%s %r is not applied: wasmvisor does not set LSM labels", key, process[key])
    return found
