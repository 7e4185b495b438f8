"""A pod's resources through CRI: the stats the kubelet reads (ContainerStats, ListContainerStats,
PodSandboxStats) and UpdateContainerResources reaching the container's cgroup."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cri.client import ContainerSpec, CriError, Pod, PodSpec, pod_running
from tests.cri.node import CriNode
from tests.e2e.host import cgroup_dirs
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri_api

ImageRef = Callable[[str], str]
MIB = 1 << 20


def memory_limit(cgroup: str) -> int:
    """memory.max (v2) or memory.limit_in_bytes (v1) of a cgroup path."""
    for folder in cgroup_dirs(cgroup):
        for name in ("memory.max", "memory.limit_in_bytes"):
            if (folder / name).exists():
                return int(Path(folder / name).read_text().strip())
    raise AssertionError(f"no memory controller folder for cgroup {cgroup}: {cgroup_dirs(cgroup)}")


def cpu_weight(cgroup: str) -> tuple[str, int]:
    """("cpu.shares", shares) on cgroup v1, ("cpu.weight", weight) on v2."""
    for folder in cgroup_dirs(cgroup):
        for name in ("cpu.shares", "cpu.weight"):
            if (folder / name).exists():
                return name, int(Path(folder / name).read_text().strip())
    raise AssertionError(f"no cpu controller folder for cgroup {cgroup}: {cgroup_dirs(cgroup)}")


def shares_as(name: str, shares: int) -> int:
    """CPU shares as the file `name` holds them (v2's weight by the conversion runc and the kernel use)."""
    return shares if name == "cpu.shares" else 1 + ((shares - 2) * 9999) // 262142


def test_stats_of_a_wasm_container_its_sidecar_and_their_pod(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("stats")) as pod:
        wasm = cri.client.run_container(pod, ContainerSpec("app", cri_image("sleep")))
        sidecar = cri.client.run_container(
            pod, ContainerSpec("sidecar", cri_image("busybox"), command=["/bin/sleep", "600"])
        )
        for container_id in (wasm, sidecar):
            cri.client.wait_container(container_id, cri_api.CONTAINER_RUNNING)
        cri.client.wait_log(pod, "app", b"sleeping")

        stats = cri.client.container_stats(wasm)
        assert stats.attributes.id == wasm and stats.attributes.metadata.name == "app"
        assert stats.memory.working_set_bytes.value > 0, stats
        assert stats.cpu.usage_core_nano_seconds.value > 0, stats

        listed = {s.attributes.id: s for s in cri.client.list_container_stats(pod)}
        assert set(listed) == {wasm, sidecar}
        assert all(s.memory.working_set_bytes.value > 0 for s in listed.values()), listed

        if pod.systemd_driver and cri.sandboxer == "podsandbox":
            # containerd's own CRI reads a pause-container pod's cgroup, and takes a slice parent for a
            # cgroupfs path: its PodSandboxStats fails the same for a runc pod (the kubelet reads pod
            # stats from cAdvisor unless PodAndContainerStatsFromCRI is on).
            assert_containerd_cannot_load_a_slice_parent(cri, pod)
            return
        pod_stats = cri.client.pod_stats(pod)
        assert pod_stats.attributes.id == pod.id
        assert {c.attributes.id for c in pod_stats.linux.containers} == {wasm, sidecar}
        assert pod_stats.linux.memory.working_set_bytes.value > 0, pod_stats


def assert_containerd_cannot_load_a_slice_parent(cri: CriNode, pod: Pod) -> None:
    with pod_running(cri.client, PodSpec("stats-runc", handler="runc")) as runc_pod:
        for each in (pod, runc_pod):
            refused = f"failed to load sandbox cgroup.*{each.cgroup_parent}.*invalid group path"
            with pytest.raises(CriError, match=refused):
                cri.client.pod_stats(each)


def test_update_container_resources_reaches_the_container_cgroup(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("update")) as pod:
        container_id = cri.client.run_container(pod, ContainerSpec("app", cri_image("sleep"), memory_limit=256 * MIB))
        cri.client.wait_container(container_id, cri_api.CONTAINER_RUNNING)
        cgroup = pod.container_cgroup(container_id)
        assert memory_limit(cgroup) == 256 * MIB
        cri.client.update_resources(
            container_id, cri_api.LinuxContainerResources(memory_limit_in_bytes=128 * MIB, cpu_shares=512)
        )
        assert memory_limit(cgroup) == 128 * MIB
        name, weight = cpu_weight(cgroup)
        assert weight == shares_as(name, 512), (name, weight)
        assert cri.client.container_status(container_id).state == cri_api.CONTAINER_RUNNING
