"""Which namespaces the supervisor's main thread holds for a pod (pods/namespaces.py `plan`, pure)."""

from __future__ import annotations

import pytest

from wasmvisor.errors import InvalidArgument, Unimplemented
from wasmvisor.supervisor.pods.config import PodConfig
from wasmvisor.supervisor.pods.namespaces import PodNamespaces, plan


def test_a_pod_gets_its_network_and_new_ipc_and_uts_with_its_hostname() -> None:
    pod = PodConfig(hostname="web-0", sysctls={"net.core.somaxconn": "1024", "kernel.shmmax": "1"})
    assert plan(pod, "/var/run/netns/cni-1", "sb") == PodNamespaces(
        netns_path="/var/run/netns/cni-1", new_ipc=True, new_uts=True, hostname="web-0",
        sysctls=(("kernel.shmmax", "1"), ("net.core.somaxconn", "1024")))


def test_a_pod_on_the_node_network_keeps_the_nodes_uts_and_hostname() -> None:
    assert plan(PodConfig(hostname="node-name", network="node", ipc="node"), "", "sb") == PodNamespaces(
        netns_path="", new_ipc=False, new_uts=False, hostname="")


@pytest.mark.parametrize("pid", ["pod", "target"])
def test_a_pid_namespace_shared_by_the_pod_is_refused(pid: str) -> None:
    with pytest.raises(Unimplemented, match="sandbox sb: a pid namespace shared by the pod"):
        plan(PodConfig(pid=pid), "/run/netns/x", "sb")


@pytest.mark.parametrize(("pod", "netns", "message"), [
    (PodConfig(), "run/netns/x", "is not absolute"),
    (PodConfig(network="node"), "/run/netns/x", "uses the node's network"),
    (PodConfig(sysctls={"vm.swappiness": "1"}), "", "sysctl vm.swappiness is not one of a pod's namespaces"),
    (PodConfig(sysctls={"net.../../x": "1"}), "", "sysctl net.../../x"),
])
def test_what_cannot_be_held_is_refused_by_name(pod: PodConfig, netns: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        plan(pod, netns, "sb")
