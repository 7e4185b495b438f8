"""What a pod asks for, read from CRI's PodSandboxConfig in CreateSandbox's options (pods/config.py)."""

from __future__ import annotations

import pytest
from google.protobuf.any_pb2 import Any

from wasmvisor.errors import InvalidArgument
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as k8s
from wasmvisor.supervisor.pods import config


def _options(message: k8s.PodSandboxConfig, type_url: str = "runtime.v1.PodSandboxConfig") -> Any:
    return Any(type_url=type_url, value=message.SerializeToString())


def test_the_pod_config_gives_names_hostname_cgroup_sysctls_and_namespace_modes() -> None:
    message = k8s.PodSandboxConfig(
        metadata=k8s.PodSandboxMetadata(name="web", namespace="shop", uid="u-1"), hostname="web-0",
        log_directory="/var/log/pods/x",
        linux=k8s.LinuxPodSandboxConfig(
            cgroup_parent="/kubepods/podu-1", sysctls={"net.core.somaxconn": "1024"},
            security_context=k8s.LinuxSandboxSecurityContext(
                namespace_options=k8s.NamespaceOption(network=k8s.NODE, ipc=k8s.POD, pid=k8s.CONTAINER))))
    assert config.parse(_options(message), "sb") == config.PodConfig(
        name="web", namespace="shop", uid="u-1", hostname="web-0", cgroup_parent="/kubepods/podu-1",
        network="node", ipc="pod", pid="container", sysctls={"net.core.somaxconn": "1024"},
        log_directory="/var/log/pods/x")


def test_no_options_or_options_of_another_type_are_a_plain_pod() -> None:
    assert config.parse(None, "sb") == config.PodConfig()
    assert config.parse(Any(type_url="example.com/Other", value=b"\x01"), "sb") == config.PodConfig()


def test_a_prefixed_type_url_is_read_too() -> None:
    url = "type.googleapis.com/runtime.v1.PodSandboxConfig"
    parsed = config.parse(_options(k8s.PodSandboxConfig(hostname="h"), url), "sb")
    assert parsed.hostname == "h"


def test_a_config_that_does_not_decode_names_the_sandbox() -> None:
    with pytest.raises(InvalidArgument, match="create sandbox sb: options runtime.v1.PodSandboxConfig"):
        config.parse(Any(type_url="runtime.v1.PodSandboxConfig", value=b"\x12\x09short"), "sb")
