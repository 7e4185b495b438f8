"""The termination message through CRI (issue 12, failures you can read): a pod's wasm container that
traps, or whose module cannot start, leaves the reason in the termination log the kubelet bind-mounts
at /dev/termination-log (the kubelet then shows it as the container's message)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.cri.client import ContainerSpec, CriError, PodSpec, pod_running
from tests.cri.node import CriNode
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri_api

ImageRef = Callable[[str], str]


def test_a_trapping_container_leaves_the_trap_in_its_termination_log(cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("trap-message")) as pod:
        container_id = cri.client.run_container(pod, ContainerSpec("app", cri_image("trap")))
        status = cri.client.wait_container(container_id, cri_api.CONTAINER_EXITED)

        assert status.exit_code == 137, status
        text = pod.termination_log("app").read_text()
        assert text.startswith("guest /trap.wasm trapped: ") and text.endswith("\n"), text


def test_a_module_that_cannot_start_leaves_its_error_in_the_termination_log(
        cri: CriNode, cri_image: ImageRef) -> None:
    with pod_running(cri.client, PodSpec("missing-message")) as pod:
        container_id = cri.client.create_container(pod, ContainerSpec("app", cri_image("missing-module")))
        with pytest.raises(CriError):  # naming the module too (test_cri_pods)
            cri.client.start_container(container_id)

        text = pod.termination_log("app").read_text()
        assert text.startswith("create failed: ") and "/missing.wasm" in text, text
