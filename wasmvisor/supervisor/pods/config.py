"""What a pod asks for, read from the Kubernetes PodSandboxConfig (runtime.v1, proto/cri) that CRI puts
in CreateSandbox's options (pure): its names, hostname, cgroup parent, sysctls and which namespaces it
shares with the node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf.any_pb2 import Any as AnyPb
from google.protobuf.message import DecodeError

from wasmvisor.errors import InvalidArgument
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as k8s

POD_SANDBOX_CONFIG = "runtime.v1.PodSandboxConfig"
"""The message name of CRI's options (containerd 2.1 marshals them with this type URL, no prefix)."""
MODES = {k8s.POD: "pod", k8s.CONTAINER: "container", k8s.NODE: "node", k8s.TARGET: "target"}


@dataclass(frozen=True)
class PodConfig:
    """The pod's wishes; the defaults are a pod with its own network, IPC and UTS namespaces."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    hostname: str = ""
    cgroup_parent: str = ""
    network: str = "pod"
    """`pod` (its own, at CreateSandbox's netns_path) or `node` (hostNetwork)."""
    ipc: str = "pod"
    pid: str = "container"
    sysctls: Mapping[str, str] = field(default_factory=dict)
    log_directory: str = ""


def parse(options: AnyPb | None, sandbox_id: str) -> PodConfig:
    """The PodConfig in CreateSandbox's `options`; the defaults when there are none, or when they are of
    another type (a containerd client other than CRI). InvalidArgument when a PodSandboxConfig does not
    decode."""
    if options is None or not options.type_url.endswith(POD_SANDBOX_CONFIG):
        return PodConfig()
    config = k8s.PodSandboxConfig()
    try:
        config.ParseFromString(options.value)
    except DecodeError as exc:
        raise InvalidArgument(f"create sandbox {sandbox_id}: options {options.type_url}: {exc}") from None
    ns = config.linux.security_context.namespace_options
    return PodConfig(
        name=config.metadata.name, namespace=config.metadata.namespace, uid=config.metadata.uid,
        hostname=config.hostname, cgroup_parent=config.linux.cgroup_parent,
        network=MODES.get(ns.network, "pod"), ipc=MODES.get(ns.ipc, "pod"), pid=MODES.get(ns.pid, "container"),
        sysctls=dict(config.linux.sysctls), log_directory=config.log_directory,
    )
