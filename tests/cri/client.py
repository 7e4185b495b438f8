"""A kubelet-like client of containerd's CRI (`runtime.v1` over containerd's gRPC socket).

It sends the configs tests/cri/kubelet.py builds as the kubelet does, calls ImageStatus before each
CreateContainer (the kubelet pulls only what is missing; these tests import images instead), removes a
pod's cgroup (under the systemd driver: stops its slice, as the kubelet does) and files after
RemovePodSandbox, and waits for states and log lines by polling, as the kubelet's pod lifecycle event
generator does. Failed calls raise `CriError` with the call's name and
CRI's message.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tests.cri import logs
from tests.cri.kubelet import ContainerSpec, Pod, PodSpec, container_config, pod_config
from tests.e2e.host import cgroup_dirs
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri
from wasmvisor.proto.cri.runtime.v1 import api_pb2_grpc as cri_grpc

__all__ = ["ContainerSpec", "CriClient", "CriError", "Pod", "PodSpec", "pod_running", "poll"]

T = TypeVar("T")
STATE_NAMES: dict[int, str] = {
    cri.CONTAINER_CREATED: "CREATED",
    cri.CONTAINER_RUNNING: "RUNNING",
    cri.CONTAINER_EXITED: "EXITED",
    cri.CONTAINER_UNKNOWN: "UNKNOWN",
}


class CriError(RuntimeError):
    """A CRI call failed: `call`, the gRPC `code` and CRI's `details` (all in the message)."""

    def __init__(self, call: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"CRI {call}: {code.name}: {details}")
        self.call = call
        self.code = code
        self.details = details


class CriClient:
    """The kubelet's side of CRI against one containerd, keeping its files under `files`."""

    def __init__(self, address: str, *, files: Path, cgroup_root: str, cgroup_driver: str = "cgroupfs",
                 timeout: float = 60.0) -> None:
        self.address = address
        self.files = files
        self.cgroup_root = cgroup_root.strip("/")
        self.cgroup_driver = cgroup_driver
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.runtime = cri_grpc.RuntimeServiceStub(self.channel)
        self.images = cri_grpc.ImageServiceStub(self.channel)
        self.pods: dict[str, Pod] = {}

    def close(self) -> None:
        self.channel.close()

    def _call(self, name: str, stub: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(stub, name)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise CriError(name, err.code(), err.details() or "") from None

    # --- runtime and images ------------------------------------------------------------------------

    def version(self) -> cri.VersionResponse:
        return self._call("Version", self.runtime, cri.VersionRequest(version="v1"))

    def image_status(self, image: str) -> cri.Image | None:
        """The image as CRI knows it, None when it is not there."""
        reply = self._call("ImageStatus", self.images, cri.ImageStatusRequest(image=cri.ImageSpec(image=image)))
        return reply.image if reply.HasField("image") else None

    def list_images(self) -> list[cri.Image]:
        return list(self._call("ListImages", self.images, cri.ListImagesRequest()).images)

    # --- pods --------------------------------------------------------------------------------------

    def pod_config(self, spec: PodSpec) -> tuple[cri.PodSandboxConfig, Path, Path]:
        """The config this client sends for `spec`, its log directory and its folder of kubelet files."""
        return pod_config(spec, files_root=self.files, cgroup_root=self.cgroup_root, cgroup_driver=self.cgroup_driver)

    def run_pod(self, spec: PodSpec) -> Pod:
        config, log_dir, files = self.pod_config(spec)
        log_dir.mkdir(parents=True, exist_ok=True)
        files.mkdir(parents=True, exist_ok=True)
        # The kubelet's managed /etc/hosts of the pod, bound into each container.
        (files / "etc-hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.0.2\t{spec.name}\n")
        request = cri.RunPodSandboxRequest(config=config, runtime_handler=spec.handler)
        pod_id = self._call("RunPodSandbox", self.runtime, request).pod_sandbox_id
        pod = Pod(pod_id, spec, config, log_dir, files)
        self.pods[pod_id] = pod
        return pod

    def pod_status(self, pod: Pod | str, verbose: bool = False) -> cri.PodSandboxStatusResponse:
        request = cri.PodSandboxStatusRequest(pod_sandbox_id=_pod_id(pod), verbose=verbose)
        return self._call("PodSandboxStatus", self.runtime, request)

    def list_pods(self) -> list[cri.PodSandbox]:
        return list(self._call("ListPodSandbox", self.runtime, cri.ListPodSandboxRequest()).items)

    def stop_pod(self, pod: Pod | str) -> None:
        self._call("StopPodSandbox", self.runtime, cri.StopPodSandboxRequest(pod_sandbox_id=_pod_id(pod)))

    def remove_pod(self, pod: Pod | str) -> None:
        """Stop and remove the pod (what the kubelet does once a pod is deleted), then its cgroup
        parent and kubelet files."""
        pod_id = _pod_id(pod)
        self.stop_pod(pod_id)
        self._call("RemovePodSandbox", self.runtime, cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        known = self.pods.pop(pod_id, None)
        if known is not None:  # the kubelet removes the pod's cgroup once its containers are gone
            if known.systemd_driver:
                subprocess.run(["systemctl", "stop", known.cgroup_parent], check=True, capture_output=True)
            for folder in cgroup_dirs(known.cgroup_path):
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def remove_all_pods(self) -> None:
        for item in self.list_pods():
            self.remove_pod(item.id)

    def pod_stats(self, pod: Pod | str) -> cri.PodSandboxStats:
        request = cri.PodSandboxStatsRequest(pod_sandbox_id=_pod_id(pod))
        return self._call("PodSandboxStats", self.runtime, request).stats

    # --- containers --------------------------------------------------------------------------------

    def create_container(self, pod: Pod, spec: ContainerSpec) -> str:
        if self.image_status(spec.image) is None:
            raise CriError("ImageStatus", grpc.StatusCode.NOT_FOUND, f"image {spec.image} is not on the node")
        request = cri.CreateContainerRequest(
            pod_sandbox_id=pod.id, config=container_config(pod, spec), sandbox_config=pod.config
        )
        container_id = self._call("CreateContainer", self.runtime, request).container_id
        pod.containers[container_id] = spec.name
        return container_id

    def start_container(self, container_id: str) -> None:
        self._call("StartContainer", self.runtime, cri.StartContainerRequest(container_id=container_id))

    def run_container(self, pod: Pod, spec: ContainerSpec) -> str:
        """CreateContainer then StartContainer, as the kubelet starts a container of a pod."""
        container_id = self.create_container(pod, spec)
        self.start_container(container_id)
        return container_id

    def stop_container(self, container_id: str, timeout: int = 0) -> None:
        request = cri.StopContainerRequest(container_id=container_id, timeout=timeout)
        self._call("StopContainer", self.runtime, request, timeout=self.timeout + timeout)

    def remove_container(self, container_id: str) -> None:
        self._call("RemoveContainer", self.runtime, cri.RemoveContainerRequest(container_id=container_id))

    def container_status(self, container_id: str, verbose: bool = False) -> cri.ContainerStatus:
        return self.container_status_reply(container_id, verbose).status

    def container_status_reply(self, container_id: str, verbose: bool = False) -> cri.ContainerStatusResponse:
        request = cri.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return self._call("ContainerStatus", self.runtime, request)

    def list_containers(self, pod: Pod | str | None = None) -> list[cri.Container]:
        filter_ = cri.ContainerFilter(pod_sandbox_id=_pod_id(pod) if pod is not None else "")
        return list(self._call("ListContainers", self.runtime, cri.ListContainersRequest(filter=filter_)).containers)

    def update_resources(self, container_id: str, resources: cri.LinuxContainerResources) -> None:
        request = cri.UpdateContainerResourcesRequest(container_id=container_id, linux=resources)
        self._call("UpdateContainerResources", self.runtime, request)

    def container_stats(self, container_id: str) -> cri.ContainerStats:
        request = cri.ContainerStatsRequest(container_id=container_id)
        return self._call("ContainerStats", self.runtime, request).stats

    def list_container_stats(self, pod: Pod | str | None = None) -> list[cri.ContainerStats]:
        filter_ = cri.ContainerStatsFilter(pod_sandbox_id=_pod_id(pod) if pod is not None else "")
        request = cri.ListContainerStatsRequest(filter=filter_)
        return list(self._call("ListContainerStats", self.runtime, request).stats)

    def exec_sync(self, container_id: str, cmd: Sequence[str], timeout: int = 0) -> cri.ExecSyncResponse:
        request = cri.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout)
        return self._call("ExecSync", self.runtime, request, timeout=self.timeout + timeout)

    def exec_url(self, container_id: str, cmd: Sequence[str], *, tty: bool = False, stdin: bool = False) -> str:
        request = cri.ExecRequest(
            container_id=container_id, cmd=list(cmd), tty=tty, stdin=stdin, stdout=True, stderr=not tty
        )
        return self._call("Exec", self.runtime, request).url

    # --- waiting, as the kubelet's pod lifecycle event generator polls -------------------------------

    def wait_container(
        self, container_id: str, state: cri.ContainerState = cri.CONTAINER_EXITED, timeout: float = 30.0
    ) -> cri.ContainerStatus:
        """Poll ContainerStatus until the container is in `state`; the last status is in the error."""
        return poll(
            lambda: self.container_status(container_id),
            lambda status: status.state == state,
            timeout,
            f"container {container_id} {STATE_NAMES[state]}",
        )

    def log_messages(self, pod: Pod, name: str, attempt: int = 0, stream: str | None = None) -> list[bytes]:
        return logs.messages(logs.read_log(pod.log_path(name, attempt)), stream)

    def wait_log(self, pod: Pod, name: str, text: bytes, attempt: int = 0, timeout: float = 15.0) -> list[bytes]:
        """Poll the container's CRI log until a line holds `text` (CRI writes it asynchronously)."""
        return poll(
            lambda: self.log_messages(pod, name, attempt),
            lambda lines: any(text in line for line in lines),
            timeout,
            f"{text!r} in {pod.log_path(name, attempt)}",
        )


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}; last: {value}")
        time.sleep(0.05)


def _pod_id(pod: Pod | str) -> str:
    return pod if isinstance(pod, str) else pod.id


@contextlib.contextmanager
def pod_running(client: CriClient, spec: PodSpec) -> Iterator[Pod]:
    """A pod for the block, removed after it (even when the block fails)."""
    pod = client.run_pod(spec)
    try:
        yield pod
    finally:
        client.remove_pod(pod)
