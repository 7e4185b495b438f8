"""The pod's namespaces, held by the supervisor's main thread.

containerd's CRI writes `/proc/<sandbox pid>/ns/{net,ipc,uts}` into every container's spec (2.1,
internal/cri/opts WithPodNamespaces), and the sandbox pid is the supervisor's. So the supervisor's main
thread, whose namespaces those files show, joins the pod's network namespace (CreateSandbox's
netns_path, made by CRI and set up by CNI) and unshares a new IPC and UTS namespace with the pod's
hostname, as a pause container would hold them; workers join them through the spec like any container's.
A namespace shared with the node (hostNetwork, hostIPC) is left as it is. setns and unshare of these
three act on the calling thread only, and are allowed in a threaded process; the loop's thread is the
main one. The supervisor talks to containerd over unix sockets named by paths, which work from any
network namespace.

A pod-wide pid namespace (shareProcessNamespace) cannot be held this way (a process's own pid namespace
never changes), and is refused.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from wasmvisor.errors import Internal, InvalidArgument, Unimplemented
from wasmvisor.linux import syscalls
from wasmvisor.linux.clone_flags import CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWUTS
from wasmvisor.supervisor.pods.config import PodConfig

NAMESPACED_SYSCTLS = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.", "net.")
"""The sysctls that belong to a pod's IPC or network namespace (Kubernetes accepts only these on a pod)."""


@dataclass(frozen=True)
class PodNamespaces:
    """What the supervisor's main thread does for a pod (pure; `enter` does it)."""

    netns_path: str = ""
    """The network namespace to join; "" to keep the node's."""
    new_ipc: bool = True
    new_uts: bool = True
    hostname: str = ""
    sysctls: tuple[tuple[str, str], ...] = ()


def plan(config: PodConfig, netns_path: str, sandbox_id: str) -> PodNamespaces:
    """The namespaces of a pod of `config`; InvalidArgument or Unimplemented for what cannot be held."""
    what = f"create sandbox {sandbox_id}"
    if config.pid in ("pod", "target"):
        raise Unimplemented(f"{what}: a pid namespace shared by the pod (shareProcessNamespace) is not supported "
                            "with sandboxer \"shim\" (use sandboxer \"podsandbox\")")
    if netns_path and not os.path.isabs(netns_path):
        raise InvalidArgument(f"{what}: network namespace path {netns_path!r} is not absolute")
    if config.network == "node" and netns_path:
        raise InvalidArgument(f"{what}: the pod uses the node's network, yet a network namespace "
                              f"{netns_path} was given")
    for key in config.sysctls:
        if not key.startswith(NAMESPACED_SYSCTLS) or "/" in key or ".." in key:
            raise InvalidArgument(f"{what}: sysctl {key} is not one of a pod's namespaces")
    # UTS follows the network, as for a pause container: a pod on the node's network keeps its hostname.
    new_uts = config.network != "node"
    return PodNamespaces(netns_path=netns_path, new_ipc=config.ipc != "node", new_uts=new_uts,
                         hostname=config.hostname if new_uts else "",
                         sysctls=tuple(sorted(config.sysctls.items())))


def enter(pod: PodNamespaces, sandbox_id: str) -> None:
    """Make the supervisor's main thread hold the pod's namespaces (once per supervisor)."""
    what = f"create sandbox {sandbox_id}"
    if threading.current_thread() is not threading.main_thread():
        raise Internal(f"{what}: the pod's namespaces must be entered on the main thread")
    try:
        if pod.netns_path:
            fd = os.open(pod.netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
        flags = (CLONE_NEWIPC if pod.new_ipc else 0) | (CLONE_NEWUTS if pod.new_uts else 0)
        if flags:
            syscalls.unshare(flags)
        if pod.hostname:
            syscalls.sethostname(pod.hostname)
    except OSError as exc:
        raise InvalidArgument(f"{what}: pod namespaces: {exc}") from None
    for key, value in pod.sysctls:
        try:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        except OSError as exc:
            raise InvalidArgument(f"{what}: sysctl {key}={value}: {exc.strerror}") from None
