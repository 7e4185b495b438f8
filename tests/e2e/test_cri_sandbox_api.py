"""Pods without a pause container: containerd 2.x's CRI with `sandboxer = "shim"` hands the pod to the
supervisor through the Sandbox API (supervisor/pods/), and the pod's containers arrive on the same
connection over Task v3, without another `start`. Driven as the kubelet drives pods (tests/cri); runs on
the 2.x lines only (1.x has no shim sandboxer)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.cri.client import ContainerSpec, PodSpec, pod_running, poll
from tests.cri.node import CriNode, cri_node
from tests.e2e.conftest import ImageTarball, shim_dir
from tests.e2e.host import process_titles, processes_titled
from tests.e2e.versions import binaries_for, selected_lines
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri_api

ImageRef = Callable[[str], str]


@pytest.fixture(scope="module", params=selected_lines())
def node(request: pytest.FixtureRequest) -> Iterator[CriNode]:
    """A CRI node whose runtime handlers use the shim sandboxer."""
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root: they start a private containerd, which mounts and runs shims")
    binaries = binaries_for(request.param)
    if binaries.major() < 2:
        pytest.skip(f"containerd {request.param} has no shim sandboxer (2.x only)")
    keep = os.environ.get("WASMVISOR_KEEP_CONTAINERD") == "1"
    with cri_node(binaries, shim_dirs=[shim_dir()], line=request.param, sandboxer="shim", keep=keep) as cri:
        yield cri


@pytest.fixture(scope="module")
def node_image(node: CriNode, images: dict[str, ImageTarball]) -> ImageRef:
    def use(name: str) -> str:
        return node.import_image(images[name].tar, images[name].ref)

    return use


def sandbox_bundle(node: CriNode, pod_id: str) -> Path:
    return Path(node.containerd.state) / "io.containerd.sandbox.controller.v1.shim" / "k8s.io" / pod_id


def test_a_pod_is_its_supervisor_alone_and_runs_a_wasm_container(node: CriNode, node_image: ImageRef) -> None:
    with pod_running(node.client, PodSpec("no-pause")) as pod:
        supervisors = node.supervisors(pod.id)
        assert len(supervisors) == 1, supervisors
        assert json.loads((sandbox_bundle(node, pod.id) / "bootstrap.json").read_text())["version"] == 3
        assert not processes_titled(f"wasmvisor-worker k8s.io/{pod.id}")  # no pause container
        assert node.client.pod_status(pod).status.state == cri_api.SANDBOX_READY
        container_id = node.client.run_container(pod, ContainerSpec("echo", node_image("echo-args-env"),
                                                                    args=["hi"]))
        status = node.client.wait_container(container_id)
        assert (status.exit_code, status.reason) == (0, "Completed")
        assert b"argv[1]=hi" in node.client.wait_log(pod, "echo", b"argv[1]=hi")
        exit42 = node.client.run_container(pod, ContainerSpec("exit", node_image("exit42")))
        assert node.client.wait_container(exit42).exit_code == 42
        assert node.supervisors(pod.id) == supervisors  # the containers ran in the pod's supervisor


def test_a_restarted_container_is_attempt_1_in_the_same_sandbox(node: CriNode, node_image: ImageRef) -> None:
    with pod_running(node.client, PodSpec("restart-app")) as pod:
        supervisors = node.supervisors(pod.id)
        for attempt in (0, 1):
            spec = ContainerSpec("app", node_image("echo-args-env"), args=[f"run-{attempt}"], attempt=attempt)
            container_id = node.client.run_container(pod, spec)
            assert node.client.wait_container(container_id).exit_code == 0
            node.client.wait_log(pod, "app", f"argv[1]=run-{attempt}".encode(), attempt=attempt)
        assert node.client.container_status(container_id).metadata.attempt == 1
        assert node.supervisors(pod.id) == supervisors


def test_a_container_joins_the_pods_network_namespace_held_by_the_supervisor(
    node: CriNode, node_image: ImageRef
) -> None:
    with pod_running(node.client, PodSpec("netns")) as pod:
        container_id = node.client.run_container(pod, ContainerSpec("app", node_image("sleep")))
        node.client.wait_log(pod, "app", b"sleeping")
        (supervisor,) = node.supervisors(pod.id)
        info = json.loads(node.client.container_status_reply(container_id, verbose=True).info["info"])
        net = os.stat(f"/proc/{supervisor}/ns/net").st_ino
        assert net != os.stat("/proc/self/ns/net").st_ino
        assert os.stat(f"/proc/{info['pid']}/ns/net").st_ino == net


def test_stop_pod_ends_its_containers_and_remove_leaves_nothing(node: CriNode, node_image: ImageRef) -> None:
    pod = node.client.run_pod(PodSpec("stop-remove"))
    container_id = node.client.run_container(pod, ContainerSpec("app", node_image("sleep")))
    node.client.wait_log(pod, "app", b"sleeping")
    node.client.stop_pod(pod)
    assert node.client.container_status(container_id).state == cri_api.CONTAINER_EXITED
    assert node.client.pod_status(pod).status.state == cri_api.SANDBOX_NOTREADY
    node.client.remove_pod(pod)
    node.wait_supervisor_gone(pod.id)
    assert not sandbox_bundle(node, pod.id).exists()


def test_a_sandbox_keeps_running_across_a_containerd_restart(node: CriNode, node_image: ImageRef) -> None:
    with pod_running(node.client, PodSpec("restart")) as pod:
        container_id = node.client.run_container(pod, ContainerSpec("app", node_image("sleep")))
        node.client.wait_log(pod, "app", b"sleeping")
        supervisors = node.supervisors(pod.id)
        node.restart_containerd()
        assert node.supervisors(pod.id) == supervisors
        assert node.client.container_status(container_id).state == cri_api.CONTAINER_RUNNING
        assert node.client.pod_status(pod).status.state == cri_api.SANDBOX_READY
    node.wait_supervisor_gone(pod.id)


def test_a_native_sidecar_shares_the_pods_hostname_and_ipc_and_takes_exec(node: CriNode, node_image: ImageRef) -> None:
    with pod_running(node.client, PodSpec("sidecar-host")) as pod:
        wasm = node.client.run_container(pod, ContainerSpec("app", node_image("sleep")))
        sidecar = node.client.run_container(pod, ContainerSpec(
            "sidecar", node_image("busybox"), command=["/bin/sh", "-c", "echo host=$(hostname); sleep 600"]))
        node.client.wait_log(pod, "app", b"sleeping")
        assert b"host=sidecar-host" in node.client.wait_log(pod, "sidecar", b"host=")
        (supervisor,) = node.supervisors(pod.id)
        for container_id in (wasm, sidecar):
            info = json.loads(node.client.container_status_reply(container_id, verbose=True).info["info"])
            for name in ("ipc", "uts"):
                pod_ns = os.stat(f"/proc/{supervisor}/ns/{name}").st_ino
                assert os.stat(f"/proc/{info['pid']}/ns/{name}").st_ino == pod_ns, (container_id, name)
        reply = node.client.exec_sync(sidecar, ["/bin/sh", "-c", "hostname; exit 3"], timeout=10)
        assert (reply.stdout, reply.exit_code) == (b"sidecar-host\n", 3)


def test_pod_stats_come_from_the_pods_cgroup(node: CriNode, node_image: ImageRef) -> None:
    with pod_running(node.client, PodSpec("stats")) as pod:
        node.client.run_container(pod, ContainerSpec("app", node_image("sleep")))
        node.client.wait_log(pod, "app", b"sleeping")
        stats = node.client.pod_stats(pod)
        assert stats.attributes.id == pod.id
        assert stats.linux.memory.working_set_bytes.value > 0 or stats.linux.memory.usage_bytes.value > 0, stats


def test_a_pod_the_shim_refuses_leaves_no_supervisor_behind(node: CriNode) -> None:
    """The kubelet retries a failed RunPodSandbox: each try must not leave an idle supervisor (containerd
    2.1 sends ShutdownSandbox, then runs `delete`, after a failed CreateSandbox)."""

    def supervisors() -> set[int]:
        """This node's supervisors: a supervisor's working directory is its first bundle, in containerd's state."""
        found = set()
        for pid, title in process_titles().items():
            if title.startswith("wasmvisor-shim k8s.io/"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/cwd").startswith(f"{node.containerd.state}/"):
                        found.add(pid)
        return found

    before = supervisors()
    config, _, _ = node.client.pod_config(PodSpec("shared-pid"))
    config.linux.security_context.namespace_options.pid = cri_api.POD  # shareProcessNamespace: refused
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as failure:
            node.client.runtime.RunPodSandbox(cri_api.RunPodSandboxRequest(config=config, runtime_handler="wasmvisor"),
                                              timeout=60)
        assert "shareProcessNamespace" in (failure.value.details() or "")
    poll(supervisors, lambda now: now <= before, 10, "the refused pods' supervisors to end")
