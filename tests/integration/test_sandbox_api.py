"""A pod without a pause container, as containerd 2.x's shim sandboxer drives it (`sandboxer = "shim"`):
`start` in a sandbox bundle answers version 3, the Sandbox API makes the supervisor the pod sandbox (its
pid, the pod's network, IPC and UTS namespaces, hostname, cgroup), the pod's containers arrive over Task v3
on the same connection and join those namespaces through /proc/<sandbox pid>/ns as CRI writes them, and
StopSandbox / ShutdownSandbox end them all and then the supervisor."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.any_pb2 import Any

from tests.e2e.host import is_alive
from tests.integration.harness import SLEEPER, Harness, ended
from wasmvisor import cgroups
from wasmvisor.proto.containerd.runtime.sandbox.v1 import sandbox_pb2 as sb
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as k8s
from wasmvisor.supervisor.rpc.ttrpc_client import TtrpcClient

SANDBOX = "containerd.runtime.sandbox.v1.Sandbox"
TASK_V3 = "containerd.task.v3.Task"
MD = {"containerd-namespace-ttrpc": "itest"}


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace as CRI hands one over (here held by a sleeping process): its path."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    path = f"/proc/{proc.pid}/ns/net"
    deadline = time.monotonic() + 10
    while os.stat(path).st_ino == os.stat("/proc/self/ns/net").st_ino and time.monotonic() < deadline:
        time.sleep(0.01)
    yield path
    proc.kill()
    proc.wait()


def pod_options(hostname: str = "podhost", cgroup_parent: str = "", pid_mode: int = k8s.CONTAINER) -> Any:
    config = k8s.PodSandboxConfig(
        metadata=k8s.PodSandboxMetadata(name="web", namespace="default", uid="u1"), hostname=hostname,
        linux=k8s.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent, security_context=k8s.LinuxSandboxSecurityContext(
            namespace_options=k8s.NamespaceOption(network=k8s.POD, ipc=k8s.POD, pid=pid_mode))))
    return Any(type_url="runtime.v1.PodSandboxConfig", value=config.SerializeToString())


def sandbox_bundle(h: Harness, sandbox_id: str) -> Path:
    """Where containerd 2.x's shim sandboxer puts a sandbox: no config.json."""
    bundle = h.base / "state" / "io.containerd.sandbox.controller.v1.shim" / "itest" / sandbox_id
    (bundle / "rootfs").mkdir(parents=True)
    return bundle


def call(h: Harness, c: TtrpcClient, service: str, method: str, request, response_type, timeout: float = 20):  # type: ignore[no-untyped-def]
    return h.run(c.call(service, method, request, response_type, metadata=MD), timeout=timeout)


def start_sandbox(h: Harness, sandbox_id: str, **create: object) -> tuple[TtrpcClient, int, str]:
    """`start` for the sandbox, CreateSandbox and StartSandbox: the connection, the sandbox pid, the socket path."""
    bundle = sandbox_bundle(h, sandbox_id)
    answer = json.loads(h.start_answer(bundle, sandbox_id))
    assert (answer["version"], answer["protocol"]) == (3, "ttrpc")
    c = h.client(answer["address"])
    call(h, c, SANDBOX, "CreateSandbox", sb.CreateSandboxRequest(
        sandbox_id=sandbox_id, bundle_path=str(bundle), **create), sb.CreateSandboxResponse)
    started = call(h, c, SANDBOX, "StartSandbox", sb.StartSandboxRequest(sandbox_id=sandbox_id),
                   sb.StartSandboxResponse)
    return c, started.pid, answer["address"].removeprefix("unix://")


def container_bundle(h: Harness, task_id: str, sandbox_pid: int, sandbox_id: str) -> Path:
    """A container of the pod with the spec CRI writes: the pod's namespaces named by the sandbox pid."""
    bundle = h.bundle(task_id, {"s.wasm": SLEEPER}, ["/s.wasm"])
    spec = json.loads((bundle / "config.json").read_text())
    spec["annotations"] = {"io.kubernetes.cri.sandbox-id": sandbox_id, "io.kubernetes.cri.container-type": "container"}
    spec["linux"] = {"namespaces": [{"type": "mount"}, {"type": "pid"}] + [
        {"type": kind, "path": f"/proc/{sandbox_pid}/ns/{name}"}
        for kind, name in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))]}
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def ns_inode(pid: int | str, name: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{name}").st_ino


def test_a_pod_lives_in_the_supervisor_and_its_container_joins_the_pods_namespaces(harness: Harness,
                                                                                  netns: str) -> None:
    h = harness
    c, pid, path = start_sandbox(h, "pod1", options=pod_options(), netns_path=netns)
    assert pid == call(h, c, TASK_V3, "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid
    assert ns_inode(pid, "net") == os.stat(netns).st_ino
    assert ns_inode(pid, "ipc") != ns_inode("self", "ipc") and ns_inode(pid, "uts") != ns_inode("self", "uts")
    hostname = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True)
    assert hostname.stdout.strip() == "podhost"
    status = call(h, c, SANDBOX, "SandboxStatus", sb.SandboxStatusRequest(sandbox_id="pod1"), sb.SandboxStatusResponse)
    assert (status.sandbox_id, status.pid, status.state) == ("pod1", pid, "SANDBOX_READY")
    platform = call(h, c, SANDBOX, "Platform", sb.PlatformRequest(sandbox_id="pod1"), sb.PlatformResponse).platform
    assert platform.os == "linux" and platform.architecture
    call(h, c, SANDBOX, "PingSandbox", sb.PingRequest(sandbox_id="pod1"), sb.PingResponse)

    bundle = container_bundle(h, "app", pid, "pod1")  # no `start`: containerd reuses the sandbox's connection
    (bundle / "stdout").touch()
    call(h, c, TASK_V3, "Create", pb.CreateTaskRequest(id="app", bundle=str(bundle), stdout=str(bundle / "stdout")),
         pb.CreateTaskResponse)
    task_pid = call(h, c, TASK_V3, "Start", pb.StartRequest(id="app"), pb.StartResponse).pid
    for name in ("net", "ipc", "uts"):
        assert ns_inode(task_pid, name) == ns_inode(pid, name), name

    waiting = h.run_later(c.call(SANDBOX, "WaitSandbox", sb.WaitSandboxRequest(sandbox_id="pod1"),
                                 sb.WaitSandboxResponse, metadata=MD))
    call(h, c, SANDBOX, "StopSandbox", sb.StopSandboxRequest(sandbox_id="pod1", timeout_secs=5), sb.StopSandboxResponse)
    assert call(h, c, TASK_V3, "Wait", pb.WaitRequest(id="app"), pb.WaitResponse).exit_status == 143  # SIGTERM
    assert waiting.result(10).exited_at.seconds > 0
    status = call(h, c, SANDBOX, "SandboxStatus", sb.SandboxStatusRequest(sandbox_id="pod1"), sb.SandboxStatusResponse)
    assert status.state == "SANDBOX_NOTREADY"
    call(h, c, TASK_V3, "Delete", pb.DeleteRequest(id="app"), pb.DeleteResponse)
    call(h, c, SANDBOX, "ShutdownSandbox", sb.ShutdownSandboxRequest(sandbox_id="pod1"), sb.ShutdownSandboxResponse)
    assert ended(pid, path), "the supervisor of a shut-down sandbox is still running"


def test_shutdown_ends_what_is_left_of_the_pod_and_its_cgroup(harness: Harness) -> None:
    h = harness
    parent = f"/wvit-{uuid.uuid4().hex[:8]}"
    c, pid, path = start_sandbox(h, "pod2", options=pod_options(cgroup_parent=parent))
    cgroup = cgroups.open_cgroup(parent, "itest", "pod2")
    assert cgroup is not None and cgroup.exists()
    metrics = call(h, c, SANDBOX, "SandboxMetrics", sb.SandboxMetricsRequest(sandbox_id="pod2"),
                   sb.SandboxMetricsResponse).metrics
    assert metrics.id == "pod2" and metrics.data.type_url == cgroup.metrics_type
    bundle = container_bundle(h, "left", pid, "pod2")
    call(h, c, TASK_V3, "Create", pb.CreateTaskRequest(id="left", bundle=str(bundle)), pb.CreateTaskResponse)
    task_pid = call(h, c, TASK_V3, "Start", pb.StartRequest(id="left"), pb.StartResponse).pid
    call(h, c, SANDBOX, "ShutdownSandbox", sb.ShutdownSandboxRequest(sandbox_id="pod2"), sb.ShutdownSandboxResponse)
    assert not is_alive(task_pid)
    assert ended(pid, path)
    assert not cgroup.exists()


def test_a_pod_sharing_its_pid_namespace_is_refused_and_its_supervisor_ends(harness: Harness) -> None:
    h = harness
    answer = json.loads(h.start_answer(sandbox_bundle(h, "pod3"), "pod3"))
    c = h.client(answer["address"])
    pid = call(h, c, TASK_V3, "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid
    with pytest.raises(Exception, match="shareProcessNamespace"):
        call(h, c, SANDBOX, "CreateSandbox", sb.CreateSandboxRequest(
            sandbox_id="pod3", options=pod_options(pid_mode=k8s.POD)), sb.CreateSandboxResponse)
    call(h, c, SANDBOX, "ShutdownSandbox", sb.ShutdownSandboxRequest(sandbox_id="pod3"), sb.ShutdownSandboxResponse)
    assert ended(pid, answer["address"].removeprefix("unix://"))
