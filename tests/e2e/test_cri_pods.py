"""Pods through containerd's CRI plugin, driven as the kubelet drives them (tests/cri): a wasm container's
output in its CRI log, exit codes and reasons, a native sidecar beside it under one supervisor, a bad
module's error, pod networking (own namespace with eth0, or the node's), `tty: true` (native containers
only)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from tests.cri import logs
from tests.cri.client import ContainerSpec, CriError, PodSpec, pod_running
from tests.cri.node import CriNode
from tests.e2e.host import process_tree, processes_titled
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri_api

ImageRef = Callable[[str], str]
MIB = 1 << 20


def container_pid(node: CriNode, container_id: str) -> int:
    """The container's pid, from ContainerStatus' verbose info (CRI's JSON under "info")."""
    info = node.client.container_status_reply(container_id, verbose=True).info["info"]
    return int(json.loads(info)["pid"])


def test_wasm_container_prints_hello_to_its_cri_log_as_one_full_line(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("hello")) as pod:
        container_id = cri.client.run_container(pod, ContainerSpec("hello", cri_image("hello")))
        status = cri.client.wait_container(container_id)
        assert (status.exit_code, status.reason) == (0, "Completed")
        assert status.log_path == str(pod.log_path("hello"))
        lines = cri.client.wait_log(pod, "hello", b"hello from wasmvisor")
        assert lines == [b"hello from wasmvisor"]
        raw = pod.log_path("hello").read_bytes().decode()
        assert raw.endswith(" stdout F hello from wasmvisor\n"), raw


def test_a_long_output_line_reaches_the_log_as_partial_lines_then_a_full_one(cri: CriNode, cri_image: ImageRef) -> None:
    long_arg = "x" * 40000  # CRI splits lines longer than 16 KiB (max_container_log_line_size)
    with pod_running(cri.client, PodSpec("long-line")) as pod:
        spec = ContainerSpec("echo", cri_image("echo-args-env"), args=["short", long_arg])
        container_id = cri.client.run_container(pod, spec)
        assert cri.client.wait_container(container_id).exit_code == 0
        cri.client.wait_log(pod, "echo", b"env WV_IMAGE=")
        lines = logs.read_log(pod.log_path("echo"))
        # argv[0], argv[1], argv[2] in 16 KiB pieces (two P, one F), then the image's WV_IMAGE variable.
        assert ["P" if line.partial else "F" for line in lines] == ["F", "F", "P", "P", "F", "F"]
        assert [len(line.content) for line in lines[2:4]] == [16384, 16384]
        assert cri.client.log_messages(pod, "echo")[1:] == [
            b"argv[1]=short",
            f"argv[2]={long_arg}".encode(),
            b"env WV_IMAGE=from-image",
        ]


@pytest.mark.parametrize(
    ("image", "memory_limit", "exit_code", "reason"),
    [
        ("hello", 0, 0, "Completed"),
        ("exit42", 0, 42, "Error"),
        ("trap", 0, 137, "Error"),
        ("memtouch", 64 * MIB, 137, "OOMKilled"),
    ],
    ids=["completed", "error", "trap", "oomkilled"],
)
def test_exit_code_and_reason_of_a_finished_wasm_container(
    cri: CriNode, cri_image: ImageRef, image: str, memory_limit: int, exit_code: int, reason: str
) -> None:
    with pod_running(cri.client, PodSpec(f"exit-{image}")) as pod:
        spec = ContainerSpec("app", cri_image(image), memory_limit=memory_limit)
        container_id = cri.client.run_container(pod, spec)
        status = cri.client.wait_container(container_id, timeout=60)
        assert (status.exit_code, status.reason) == (exit_code, reason), status


def test_wasm_container_and_native_sidecar_run_under_one_supervisor(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("sidecar")) as pod:
        wasm = cri.client.run_container(pod, ContainerSpec("app", cri_image("sleep")))
        sidecar = cri.client.run_container(
            pod, ContainerSpec("sidecar", cri_image("busybox"), command=["/bin/sh", "-c", "echo sidecar up; sleep 600"])
        )
        for container_id in (wasm, sidecar):
            cri.client.wait_container(container_id, cri_api.CONTAINER_RUNNING)
        cri.client.wait_log(pod, "app", b"sleeping")
        cri.client.wait_log(pod, "sidecar", b"sidecar up")
        supervisors = processes_titled(f"wasmvisor-shim k8s.io/{pod.id}")
        assert len(supervisors) == 1, supervisors
        tree = process_tree(supervisors[0])
        for container_id in (wasm, sidecar):
            assert container_pid(cri, container_id) in tree, container_id
        assert processes_titled(f"wasmvisor-worker k8s.io/{wasm}")


@pytest.mark.parametrize(
    ("image", "error"),
    [
        ("malformed", "module /broken.wasm: invalid wasm"),
        ("missing-module", "/missing.wasm"),
        ("imports-missing", "module /imports_missing.wasm: unknown import env::nope"),
    ],
)
def test_a_bad_module_fails_start_container_with_an_error_that_names_it(
    cri: CriNode, cri_image: ImageRef, image: str, error: str
) -> None:
    with pod_running(cri.client, PodSpec(f"bad-{image}")) as pod:
        container_id = cri.client.create_container(pod, ContainerSpec("app", cri_image(image)))
        with pytest.raises(CriError) as failure:
            cri.client.start_container(container_id)
        assert error in failure.value.details
        # What `kubectl describe pod` shows comes from ContainerStatus: the same text.
        status = cri.client.container_status(container_id)
        assert (status.state, status.exit_code, status.reason) == (cri_api.CONTAINER_EXITED, 128, "StartError")
        assert error in status.message, status


def test_a_pod_has_its_own_network_namespace_with_eth0_on_127(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("own-net")) as pod:
        assert cri.client.pod_status(pod).status.network.ip == "127.0.0.2"
        container_id = cri.client.run_container(pod, ContainerSpec("app", cri_image("sleep")))
        cri.client.wait_container(container_id, cri_api.CONTAINER_RUNNING)
        pid = container_pid(cri, container_id)
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        interfaces = _netns_interfaces(pid)
        assert {"lo", "eth0"} <= set(interfaces), interfaces


def _netns_interfaces(pid: int) -> list[str]:
    """Interface names in the network namespace of `pid` (from its /proc/PID/net/dev)."""
    with open(f"/proc/{pid}/net/dev") as f:
        return [line.split(":", 1)[0].strip() for line in f.readlines()[2:]]


def test_a_host_network_pod_shares_the_node_network_namespace(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("host-net", host_network=True)) as pod:
        container_id = cri.client.run_container(pod, ContainerSpec("app", cri_image("sleep")))
        cri.client.wait_container(container_id, cri_api.CONTAINER_RUNNING)
        pid = container_pid(cri, container_id)
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")


def test_a_native_container_with_tty_writes_its_terminal_to_the_log(cri: CriNode, cri_image: ImageRef) -> None:
    script = "if [ -t 1 ]; then echo on a terminal; fi"
    with pod_running(cri.client, PodSpec("tty-native")) as pod:
        spec = ContainerSpec("sidecar", cri_image("busybox"), command=["/bin/sh", "-c", script], tty=True)
        container_id = cri.client.run_container(pod, spec)
        assert cri.client.wait_container(container_id).exit_code == 0
        # `[ -t 1 ]` holds only on a terminal (CRI drops the CR of the terminal's CRLF line ends).
        assert cri.client.wait_log(pod, "sidecar", b"on a terminal") == [b"on a terminal"]


def test_a_wasm_container_with_tty_is_refused_by_name(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("tty-wasm")) as pod:
        container_id = cri.client.create_container(pod, ContainerSpec("app", cri_image("hello"), tty=True))
        with pytest.raises(CriError) as failure:
            cri.client.start_container(container_id)
        assert "/hello.wasm is a wasm module, and a wasm guest cannot have a tty" in failure.value.details
