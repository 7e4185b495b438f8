"""A pod's life through CRI: StopContainer's grace period, a restarted container (attempt 1), containerd
restarted under running pods, many pods at once, and nothing of a pod left after RemovePodSandbox."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.cri.client import ContainerSpec, Pod, PodSpec, pod_running, poll
from tests.cri.node import CriNode
from tests.e2e.host import cgroup_dirs, is_alive, process_titles, process_tree, processes_titled
from wasmvisor.linux import mountinfo
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri_api

ImageRef = Callable[[str], str]
MANY_PODS = 30
TERM_TRAP = 'trap "echo got TERM" TERM; echo ready; while true; do sleep 1; done'


def test_stop_container_sends_sigterm_then_sigkill_at_the_grace_deadline(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("grace")) as pod:
        spec = ContainerSpec("stubborn", cri_image("busybox"), command=["/bin/sh", "-c", TERM_TRAP])
        container_id = cri.client.run_container(pod, spec)
        cri.client.wait_log(pod, "stubborn", b"ready")
        cri.client.stop_container(container_id, timeout=2)
        status = cri.client.container_status(container_id)
        assert status.state == cri_api.CONTAINER_EXITED
        # It saw SIGTERM, went on, and was killed with SIGKILL once the 2 s were over.
        assert status.exit_code == 137, status
        assert b"got TERM" in cri.client.log_messages(pod, "stubborn")


def test_stop_container_ends_a_sleeping_wasm_guest_with_sigterm_within_the_grace(
    cri: CriNode, cri_image: ImageRef
) -> None:
    with pod_running(cri.client, PodSpec("grace-wasm")) as pod:
        container_id = cri.client.run_container(pod, ContainerSpec("app", cri_image("sleep")))
        cri.client.wait_log(pod, "app", b"sleeping")
        cri.client.stop_container(container_id, timeout=30)
        status = cri.client.container_status(container_id)
        assert (status.state, status.exit_code, status.reason) == (cri_api.CONTAINER_EXITED, 143, "Error"), status


def test_a_restarted_container_is_attempt_1_with_its_own_log_in_the_same_pod(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("restart")) as pod:
        ids = []
        for attempt in (0, 1):
            spec = ContainerSpec("app", cri_image("echo-args-env"), args=[f"run-{attempt}"], attempt=attempt)
            container_id = cri.client.run_container(pod, spec)
            assert cri.client.wait_container(container_id).exit_code == 0
            cri.client.wait_log(pod, "app", f"argv[1]=run-{attempt}".encode(), attempt=attempt)
            ids.append(container_id)
        status = cri.client.container_status(ids[1])
        assert status.metadata.attempt == 1 and status.log_path.endswith("app/1.log"), status
        assert b"argv[1]=run-0" not in b"".join(cri.client.log_messages(pod, "app", attempt=1))
        assert {c.id for c in cri.client.list_containers(pod)} == set(ids)
        assert len(processes_titled(f"wasmvisor-shim k8s.io/{pod.id}")) == 1


def test_pods_keep_running_across_a_containerd_restart(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("restart-containerd")) as pod:
        wasm = cri.client.run_container(pod, ContainerSpec("app", cri_image("sleep")))
        sidecar = cri.client.run_container(
            pod, ContainerSpec("sidecar", cri_image("busybox"), command=["/bin/sleep", "600"])
        )
        cri.client.wait_log(pod, "app", b"sleeping")
        supervisors = processes_titled(f"wasmvisor-shim k8s.io/{pod.id}")
        assert len(supervisors) == 1, supervisors

        cri.restart_containerd()

        assert processes_titled(f"wasmvisor-shim k8s.io/{pod.id}") == supervisors
        for container_id in (wasm, sidecar):
            assert cri.client.container_status(container_id).state == cri_api.CONTAINER_RUNNING
        assert cri.client.pod_status(pod).status.state == cri_api.SANDBOX_READY
        # containerd talks to the same supervisor again: a stop goes through and is reported.
        cri.client.stop_container(wasm, timeout=10)
        assert cri.client.container_status(wasm).exit_code == 143
    cri.wait_supervisor_gone(pod.id)


def test_many_pods_created_and_removed_at_once(cri: CriNode, cri_image: ImageRef) -> None:
    image = cri_image("sleep")

    def start(index: int) -> tuple[Pod, str]:
        pod = cri.client.run_pod(PodSpec(f"many-{index}"))
        return pod, cri.client.run_container(pod, ContainerSpec("app", image))

    with ThreadPoolExecutor(max_workers=MANY_PODS) as pool:
        started = list(pool.map(start, range(MANY_PODS)))
        for _pod, container_id in started:
            cri.client.wait_container(container_id, cri_api.CONTAINER_RUNNING, timeout=60)
        assert all(processes_titled(f"wasmvisor-shim k8s.io/{pod.id}") for pod, _ in started)
        list(pool.map(lambda item: cri.client.remove_pod(item[0]), started))
    for pod, _ in started:
        cri.wait_supervisor_gone(pod.id)
    assert not {pod.id for pod, _ in started} & {item.id for item in cri.client.list_pods()}


def test_nothing_of_a_pod_is_left_after_remove_pod_sandbox(cri: CriNode, cri_image: ImageRef) -> None:
    pod = cri.client.run_pod(PodSpec("leftovers"))
    wasm = cri.client.run_container(pod, ContainerSpec("app", cri_image("sleep")))
    sidecar = cri.client.run_container(
        pod, ContainerSpec("sidecar", cri_image("busybox"), command=["/bin/sleep", "600"])
    )
    cri.client.wait_log(pod, "app", b"sleeping")
    [supervisor] = processes_titled(f"wasmvisor-shim k8s.io/{pod.id}")
    processes = process_tree(supervisor)
    titles = {pid: title for pid, title in process_titles().items() if pid in processes}
    ids = (pod.id, wasm, sidecar)
    assert any(i in point for point in mountinfo.mount_points() for i in ids)
    assert _fifos_naming(cri.containerd.base, ids)

    cri.client.remove_pod(pod)
    cri.wait_supervisor_gone(pod.id)

    # The supervisor's children (zygote, workers) may end a moment after it.
    poll(lambda: [p for p in processes if is_alive(p)], lambda pids: not pids, 10, f"the end of the pod's {titles}")
    assert [p for p in mountinfo.mount_points() if any(i in p for i in ids)] == []
    assert [d for c in (wasm, sidecar) for d in cgroup_dirs(pod.container_cgroup(c))] == []
    assert cgroup_dirs(pod.cgroup_path) == []
    assert _fifos_naming(cri.containerd.base, ids) == []
    assert not cri.containerd.shim_socket("k8s.io", pod.id).exists()


def _fifos_naming(base: Path, ids: tuple[str, ...]) -> list[str]:
    """FIFOs below `base` whose path names one of `ids` (CRI's and the shim's stdio FIFOs)."""
    found = []
    for folder, _dirs, files in os.walk(base):
        for name in files:
            path = os.path.join(folder, name)
            try:
                if stat.S_ISFIFO(os.lstat(path).st_mode) and any(i in path for i in ids):
                    found.append(path)
            except OSError:
                continue
    return found
