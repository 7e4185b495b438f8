"""Components in Kubernetes pods, through containerd's CRI plugin as the kubelet drives it (tests/cri): a
WASI 0.2 command component's output in its CRI log and its exit reason, and an HTTP component
(`wasi:http/proxy`) serving in the pod's own network namespace until StopContainer ends it with 143."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cri.client import ContainerSpec, PodSpec, pod_running
from tests.cri.node import CriNode
from tests.e2e.conftest import REPO
from tests.e2e.netns_http import requests_in_netns
from tests.guests.components import build_component, build_python_component
from wasmvisor.image import build_oci_tar
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri_api

ComponentImage = Callable[[str, bytes], str]
READY_TIMEOUT = 180.0
"""The first start compiles the Python component (~12 s here, more on a loaded machine)."""


@pytest.fixture(scope="module")
def component_image(cri: CriNode, tmp_path_factory: pytest.TempPathFactory) -> ComponentImage:
    """component_image(name, wasm) -> ref of a one-file image `/NAME.wasm` imported into the CRI node."""
    out = tmp_path_factory.mktemp("cri-components")

    def use(name: str, wasm: bytes) -> str:
        ref = f"docker.io/wasmvisor-test/cri-component-{name.replace('_', '-')}:latest"
        tar = out / f"{name}.tar"
        build_oci_tar(tar, ref, {f"/{name}.wasm": wasm}, entrypoint=[f"/{name}.wasm"])
        return cri.import_image(tar, ref)

    return use


def _cache() -> Path:
    return REPO / "_work" / "guests"


@pytest.mark.parametrize(("guest", "exit_code", "reason"), [("hello", 0, "Completed"), ("exit42", 1, "Error")])
def test_command_component_in_a_pod_logs_and_exits(cri: CriNode, component_image: ComponentImage,
                                                   guest: str, exit_code: int, reason: str) -> None:
    ref = component_image(guest, build_component(guest, _cache()).read_bytes())
    with pod_running(cri.client, PodSpec(f"component-{guest}")) as pod:
        container_id = cri.client.run_container(pod, ContainerSpec("app", ref))
        status = cri.client.wait_container(container_id, timeout=60)
        assert (status.exit_code, status.reason) == (exit_code, reason), status  # WASI 0.2: exit(42) is err
        if guest == "hello":
            assert cri.client.wait_log(pod, "app", b"hello from wasmvisor") == [b"hello from wasmvisor"]


def test_http_component_in_a_pod_serves_in_the_pods_network_namespace(
    cri: CriNode, component_image: ComponentImage
) -> None:
    wasm = build_python_component("http_echo", "wasi:http/proxy@0.2.12", _cache()).read_bytes()
    ref = component_image("http_echo", wasm)
    with pod_running(cri.client, PodSpec("http-component")) as pod:
        container_id = cri.client.run_container(pod, ContainerSpec("web", ref))
        info = cri.client.container_status_reply(container_id, verbose=True).info["info"]
        pid = int(json.loads(info)["pid"])
        deadline = time.monotonic() + READY_TIMEOUT
        while requests_in_netns(pid, 8080, [("GET", "/hello", "")])[0][0] != 200:
            assert time.monotonic() < deadline, "the HTTP component never answered on port 8080"
            time.sleep(0.5)
        answers = requests_in_netns(pid, 8080, [("POST", "/echo", "a body\n"), ("GET", "/count", "")])
        assert answers[0] == (200, "a body\n"), answers
        assert answers[1][0] == 200, answers
        cri.client.stop_container(container_id, timeout=10)
        status = cri.client.wait_container(container_id, timeout=30)
        assert status.state == cri_api.CONTAINER_EXITED and status.exit_code == 143, status
