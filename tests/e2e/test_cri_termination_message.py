"""The termination message through CRI: the kubelet binds a file at /dev/termination-log and shows its
text in `kubectl describe pod`; when a container fails for a reason the shim knows (a trap, an OOM kill,
a module that cannot start) and wrote nothing there, the shim writes that reason as one line."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.cri.client import ContainerSpec, CriError, PodSpec, pod_running
from tests.cri.node import CriNode

ImageRef = Callable[[str], str]
MIB = 1 << 20


@pytest.mark.parametrize(
    ("image", "memory_limit", "expected"),
    [
        ("trap", 0, "guest /trap.wasm trapped: wasm trap: wasm `unreachable` instruction executed"),
        ("memtouch", 64 * MIB, f"OOMKilled: the container reached its memory limit of {64 * MIB} bytes"),
    ],
    ids=["trap", "oomkilled"],
)
def test_a_failed_wasm_container_leaves_its_reason_as_termination_message(
    cri: CriNode, cri_image: ImageRef, image: str, memory_limit: int, expected: str
) -> None:
    with pod_running(cri.client, PodSpec(f"termination-{image}")) as pod:
        container_id = cri.client.run_container(pod, ContainerSpec("app", cri_image(image), memory_limit=memory_limit))
        assert cri.client.wait_container(container_id, timeout=60).exit_code == 137
        message = pod.termination_message("app")
        assert message.startswith(expected) and message.endswith("\n") and message.count("\n") == 1, message


@pytest.mark.parametrize(
    ("image", "error"),
    [("malformed", "module /broken.wasm: invalid wasm"), ("missing-module", "/missing.wasm")],
)
def test_a_module_that_cannot_start_leaves_the_error_as_termination_message(
    cri: CriNode, cri_image: ImageRef, image: str, error: str
) -> None:
    with pod_running(cri.client, PodSpec(f"termination-{image}")) as pod:
        container_id = cri.client.create_container(pod, ContainerSpec("app", cri_image(image)))
        with pytest.raises(CriError):
            cri.client.start_container(container_id)
        message = pod.termination_message("app")
        assert message.startswith("create failed: ") and error in message, message


def test_a_container_that_exits_0_leaves_no_termination_message(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("termination-ok")) as pod:
        container_id = cri.client.run_container(pod, ContainerSpec("app", cri_image("hello")))
        assert cri.client.wait_container(container_id).exit_code == 0
        assert pod.termination_message("app") == ""


def test_a_message_the_container_wrote_itself_is_kept(cri: CriNode, cri_image: ImageRef) -> None:
    script = "echo 'config missing' > /dev/termination-log; exit 3"
    with pod_running(cri.client, PodSpec("termination-own")) as pod:
        spec = ContainerSpec("sidecar", cri_image("busybox"), command=["/bin/sh", "-c", script])
        container_id = cri.client.run_container(pod, spec)
        assert cri.client.wait_container(container_id).exit_code == 3
        assert pod.termination_message("sidecar") == "config missing\n"
