"""The systemd cgroup driver (`SystemdCgroup = true`, pods under `kubepods-<qos>-pod<uid>.slice`) on a node
that systemd runs on cgroup v2: each wasmvisor container is a transient systemd scope, as runc's are, so
its limits survive systemd re-realizing the pod slice, OOM kills are reported, and nothing is left after
RemovePodSandbox. Runs in the cgroup v2 VM (scripts/vm/); this machine has no systemd as PID 1."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cri.client import ContainerSpec, PodSpec
from tests.cri.kubelet import container_scope
from tests.cri.node import CriNode
from tests.e2e import host
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri_api

ImageRef = Callable[[str], str]
MIB = 1 << 20

pytestmark = [
    pytest.mark.skipif(not host.systemd_is_init(), reason="systemd is not PID 1 on this host (the driver needs it)"),
    pytest.mark.skipif(not host.UNIFIED, reason="cgroup v1: wasmvisor makes systemd scopes on cgroup v2 only"),
]


@pytest.fixture
def systemd_cri(cri: CriNode) -> CriNode:
    if cri.client.cgroup_driver != "systemd":
        pytest.skip(f"{host.CGROUP_DRIVER_ENV} chose the {cri.client.cgroup_driver} driver")
    return cri


def systemctl(*args: str) -> str:
    proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"systemctl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def unit_properties(unit: str) -> dict[str, str]:
    text = systemctl("show", "-p", "ActiveState,ControlGroup,LoadState", unit)
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def units_named(pattern: str) -> list[str]:
    return systemctl("list-units", "--all", "--plain", "--no-legend", "--no-pager", pattern).splitlines()


def cgroup_file(cgroup: str, name: str) -> str:
    return (host.CGROUP_ROOT / cgroup.strip("/") / name).read_text().strip()


def journal_warnings(since: float, words: list[str]) -> list[str]:
    """Journal lines of priority warning or worse since `since` (epoch seconds) naming one of `words`."""
    proc = subprocess.run(["journalctl", "--no-pager", "-o", "cat", "-p", "warning", f"--since=@{int(since)}"],
                          capture_output=True, text=True, timeout=60)
    return [line for line in proc.stdout.splitlines() if any(word in line for word in words)]


def test_wasm_container_is_a_systemd_scope_whose_limit_survives_its_slice_and_leaves_nothing(
    systemd_cri: CriNode, cri_image: ImageRef
) -> None:
    client = systemd_cri.client
    began = time.time()
    pod = client.run_pod(PodSpec("systemd-scope", qos="burstable"))  # limits and no requests: burstable
    app = oom = ""
    try:
        assert pod.cgroup_parent.startswith("kubepods-burstable-pod") and pod.cgroup_parent.endswith(".slice")
        app = client.run_container(pod, ContainerSpec("app", cri_image("sleep"), memory_limit=64 * MIB))
        client.wait_container(app, cri_api.CONTAINER_RUNNING)
        client.wait_log(pod, "app", b"sleeping")

        scope, cgroup = container_scope(app), pod.container_cgroup(app)
        assert unit_properties(scope) == {"ActiveState": "active", "ControlGroup": cgroup, "LoadState": "loaded"}
        # The worker and, the pod asking for a pid namespace, its relay outside it: both in the scope.
        workers = host.processes_titled(f"wasmvisor-worker k8s.io/{app}")
        relays = host.processes_titled(f"wasmvisor-init k8s.io/{app}")
        assert workers and relays, host.process_titles()
        assert set(workers + relays) <= {int(p) for p in cgroup_file(cgroup, "cgroup.procs").split()}
        assert cgroup_file(cgroup, "memory.max") == str(64 * MIB)

        # systemd re-realizes the pod slice: a cgroup it did not know would lose its controllers here.
        systemctl("set-property", "--runtime", pod.cgroup_parent, "CPUWeight=50")
        assert "memory" in cgroup_file(pod.cgroup_path, "cgroup.subtree_control").split()
        assert cgroup_file(cgroup, "memory.max") == str(64 * MIB)
        systemctl("daemon-reload")
        assert cgroup_file(cgroup, "memory.max") == str(64 * MIB)

        oom = client.run_container(pod, ContainerSpec("oom", cri_image("memtouch"), memory_limit=64 * MIB))
        status = client.wait_container(oom, timeout=60)
        assert (status.exit_code, status.reason) == (137, "OOMKilled"), status
        assert client.container_status(app).state == cri_api.CONTAINER_RUNNING
    finally:
        client.remove_pod(pod)  # StopPodSandbox, RemovePodSandbox, then the kubelet stops the pod slice

    ids = [i for i in (pod.id, app, oom) if i]
    assert [u for i in ids for u in units_named(f"cri-containerd-{i}*")] == []
    assert [d for i in ids for d in host.cgroup_dirs(pod.container_cgroup(i))] == []
    assert not Path(host.CGROUP_ROOT / pod.cgroup_path.strip("/")).exists()
    assert [p for i in ids for p in host.processes_titled(f"wasmvisor-worker k8s.io/{i}")] == []
    assert journal_warnings(began, [pod.cgroup_parent, *ids]) == []
