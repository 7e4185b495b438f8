"""What the kubelet makes of a pod manifest for CRI, so that what the shim sees under the tests is what it
sees on a node: the pod's `log_directory` (`<files>/logs/<ns>_<name>_<uid>`), its `cgroup_parent`
(cgroupfs driver: `/<cgroup_root>/pod<uid>`; systemd driver: `kubepods-<qos>-pod<uid with _>.slice`, the
slice systemd nests as /kubepods.slice/kubepods-<qos>.slice/..., creating missing parents), the
`io.kubernetes.*` labels, namespace options and
hostname; per container `log_path` `<name>/<attempt>.log`, binds of the pod's `/etc/hosts` and of a fresh
file at `/dev/termination-log`, and the kubelet's annotations (restart count, termination message path).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wasmvisor.cgroups.paths import expand_slice
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_MAX = 4096
"""The kubelet reads at most this much of a termination message file."""


@dataclass(frozen=True)
class PodSpec:
    """What a pod manifest says that reaches CRI."""

    name: str
    handler: str = "wasmvisor"
    namespace: str = "default"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    host_network: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0
    qos: str = "besteffort"
    """The pod's QoS class (besteffort, burstable, guaranteed): the systemd driver's slice names it."""


@dataclass(frozen=True)
class ContainerSpec:
    """What a container of a pod manifest says that reaches CRI."""

    name: str
    image: str
    command: Sequence[str] = ()
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    memory_limit: int = 0
    """Bytes; 0 for none."""
    cpu_quota: int = 0
    cpu_period: int = 0
    cpu_shares: int = 0
    attempt: int = 0
    termination_message_path: str = TERMINATION_LOG
    tty: bool = False


@dataclass
class Pod:
    """A pod sandbox this client ran: its id, spec, config and the kubelet-side files."""

    id: str
    spec: PodSpec
    config: cri.PodSandboxConfig
    log_dir: Path
    files: Path
    """The pod's folder of kubelet files (etc-hosts, termination logs)."""
    containers: dict[str, str] = field(default_factory=dict)
    """container id -> name."""

    @property
    def cgroup_parent(self) -> str:
        return self.config.linux.cgroup_parent

    @property
    def systemd_driver(self) -> bool:
        return self.cgroup_parent.endswith(".slice")

    @property
    def cgroup_path(self) -> str:
        """The pod's cgroup below the hierarchy's root (a systemd slice's nested folders)."""
        return expand_slice(self.cgroup_parent) if self.systemd_driver else self.cgroup_parent

    def container_cgroup(self, container_id: str) -> str:
        """The cgroup CRI gives a container of the pod: `<parent>/<id>`, or with a slice parent
        `<slice>:cri-containerd:<id>`, the scope `cri-containerd-<id>.scope` in it."""
        if self.systemd_driver:
            return f"{self.cgroup_path}/{container_scope(container_id)}"
        return f"{self.cgroup_parent}/{container_id}"

    def log_path(self, name: str, attempt: int = 0) -> Path:
        return self.log_dir / name / f"{attempt}.log"

    def termination_log(self, name: str, attempt: int = 0) -> Path:
        return self.files / "containers" / name / f"termination-{attempt}"

    def termination_message(self, name: str, attempt: int = 0) -> str:
        """What the kubelet shows as the container's termination message (the file's first 4 KiB)."""
        with self.termination_log(name, attempt).open("rb") as f:
            return f.read(TERMINATION_MESSAGE_MAX).decode(errors="replace")


def container_scope(container_id: str) -> str:
    """The systemd unit of a container's cgroup under the systemd driver (CRI's prefix `cri-containerd`)."""
    return f"cri-containerd-{container_id}.scope"


def cgroup_parent(spec: PodSpec, *, cgroup_root: str, driver: str) -> str:
    """The pod's cgroup parent as the kubelet's cgroup driver names it."""
    if driver == "systemd":
        qos = "" if spec.qos == "guaranteed" else f"-{spec.qos}"
        return f"kubepods{qos}-pod{spec.uid.replace('-', '_')}.slice"
    return f"/{cgroup_root.strip('/')}/pod{spec.uid}"


def pod_config(spec: PodSpec, *, files_root: Path, cgroup_root: str,
               cgroup_driver: str = "cgroupfs") -> tuple[cri.PodSandboxConfig, Path, Path]:
    """The PodSandboxConfig the kubelet sends for `spec`, the pod's log directory and its folder of
    kubelet files (both under `files_root`)."""
    files = files_root / "pods" / spec.uid
    log_dir = files_root / "logs" / f"{spec.namespace}_{spec.name}_{spec.uid}"
    labels = {
        "io.kubernetes.pod.name": spec.name,
        "io.kubernetes.pod.namespace": spec.namespace,
        "io.kubernetes.pod.uid": spec.uid,
        **spec.labels,
    }
    network = cri.NODE if spec.host_network else cri.POD
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=spec.name, uid=spec.uid, namespace=spec.namespace, attempt=spec.attempt),
        hostname="" if spec.host_network else spec.name,
        log_directory=str(log_dir),
        labels=labels,
        annotations={"kubernetes.io/config.source": "api"},
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent(spec, cgroup_root=cgroup_root, driver=cgroup_driver),
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=cri.NamespaceOption(network=network, pid=cri.CONTAINER, ipc=cri.POD)
            ),
        ),
    )
    return config, log_dir, files


def container_config(pod: Pod, spec: ContainerSpec) -> cri.ContainerConfig:
    """The ContainerConfig the kubelet sends for `spec` in `pod`; makes the container's (empty)
    termination message file first, as the kubelet does."""
    termination = pod.termination_log(spec.name, spec.attempt)
    termination.parent.mkdir(parents=True, exist_ok=True)
    termination.touch()
    labels = {
        "io.kubernetes.container.name": spec.name,
        "io.kubernetes.pod.name": pod.spec.name,
        "io.kubernetes.pod.namespace": pod.spec.namespace,
        "io.kubernetes.pod.uid": pod.spec.uid,
    }
    annotations = {
        "io.kubernetes.container.restartCount": str(spec.attempt),
        "io.kubernetes.container.terminationMessagePath": spec.termination_message_path,
        "io.kubernetes.container.terminationMessagePolicy": "File",
    }
    network = cri.NODE if pod.spec.host_network else cri.POD
    return cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=spec.name, attempt=spec.attempt),
        image=cri.ImageSpec(image=spec.image, user_specified_image=spec.image),
        command=list(spec.command),
        args=list(spec.args),
        envs=[cri.KeyValue(key=k, value=v) for k, v in spec.env.items()],
        mounts=[
            cri.Mount(container_path="/etc/hosts", host_path=str(pod.files / "etc-hosts")),
            cri.Mount(container_path=spec.termination_message_path, host_path=str(termination)),
        ],
        labels=labels,
        annotations=annotations,
        log_path=f"{spec.name}/{spec.attempt}.log",
        tty=spec.tty,
        linux=cri.LinuxContainerConfig(
            resources=cri.LinuxContainerResources(
                memory_limit_in_bytes=spec.memory_limit,
                cpu_quota=spec.cpu_quota,
                cpu_period=spec.cpu_period,
                cpu_shares=spec.cpu_shares or 2,
            ),
            security_context=cri.LinuxContainerSecurityContext(
                namespace_options=cri.NamespaceOption(network=network, pid=cri.CONTAINER, ipc=cri.POD)
            ),
        ),
    )
