"""The pure parts of the CRI test harness (tests/cri): the kubelet's pod and container configs, CRI log
lines, the node's containerd config values for 1.x and 2.x, and the exit code of a streamed exec's final
status."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cri.kubelet import ContainerSpec, Pod, PodSpec, container_config, pod_config
from tests.cri.logs import CriLogError, LogLine, messages, parse_log
from tests.cri.node import PAUSE_REF, SHIM_SANDBOXER_HANDLER, CriNodeError, cri_config
from tests.cri.streaming import ExecResult, StreamError
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri

LOG = (
    b"2026-12-06T04:11:10.1Z stdout F hello\n"
    b"2026-12-06T04:11:10.2Z stdout P abc\n"
    b"2026-12-06T04:11:10.3Z stderr F oops\n"
    b"2026-12-06T04:11:10.4Z stdout F def\n"
    b"2026-12-06T04:11:10.5Z stdout F \n"
    b"2026-12-06T04:11:10.6Z stdout F still being writ"
)


def test_pod_config_is_the_kubelets_log_directory_cgroup_parent_labels_and_namespaces(tmp_path: Path) -> None:
    spec = PodSpec("web", uid="u1", namespace="shop")
    config, log_dir, files = pod_config(spec, files_root=tmp_path, cgroup_root="/wvcri-x/")
    assert config.log_directory == str(log_dir) == str(tmp_path / "logs" / "shop_web_u1")
    assert files == tmp_path / "pods" / "u1"
    assert config.linux.cgroup_parent == "/wvcri-x/podu1"
    assert config.hostname == "web" and config.metadata.namespace == "shop"
    assert config.labels["io.kubernetes.pod.uid"] == "u1"
    assert config.linux.security_context.namespace_options.network == cri.POD
    host, _, _ = pod_config(PodSpec("h", host_network=True), files_root=tmp_path, cgroup_root="x")
    assert (host.hostname, host.linux.security_context.namespace_options.network) == ("", cri.NODE)


def test_under_the_systemd_driver_the_pod_parent_is_its_qos_slice_and_containers_are_scopes(tmp_path: Path) -> None:
    uid = "0b1e-77"
    parents = {}
    for qos in ("besteffort", "burstable", "guaranteed"):
        config, log_dir, files = pod_config(PodSpec("web", uid=uid, qos=qos), files_root=tmp_path, cgroup_root="x",
                                            cgroup_driver="systemd")
        parents[qos] = config.linux.cgroup_parent
    assert parents == {"besteffort": "kubepods-besteffort-pod0b1e_77.slice",
                       "burstable": "kubepods-burstable-pod0b1e_77.slice", "guaranteed": "kubepods-pod0b1e_77.slice"}
    config, log_dir, files = pod_config(PodSpec("web", uid=uid), files_root=tmp_path, cgroup_root="x",
                                        cgroup_driver="systemd")
    pod = Pod("pod-id", PodSpec("web", uid=uid), config, log_dir, files)
    assert pod.cgroup_path == "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b1e_77.slice"
    assert pod.container_cgroup("c1") == f"{pod.cgroup_path}/cri-containerd-c1.scope"


def test_the_systemd_driver_sets_systemd_cgroup_on_every_handler() -> None:
    v2 = cri_config(1, cni_bin=Path("/b"), cni_conf=Path("/c"), systemd_cgroup=True)
    assert v2[('plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmvisor.options', "SystemdCgroup")] is True
    assert v2[('plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options', "SystemdCgroup")] is True
    v3 = cri_config(2, cni_bin=Path("/b"), cni_conf=Path("/c"), systemd_cgroup=True)
    runtimes = 'plugins."io.containerd.cri.v1.runtime".containerd.runtimes'
    for handler in ("wasmvisor", "runc", SHIM_SANDBOXER_HANDLER):
        assert v3[(f"{runtimes}.{handler}.options", "SystemdCgroup")] is True
    assert not [key for key in cri_config(2, cni_bin=Path("/b"), cni_conf=Path("/c")) if key[1] == "SystemdCgroup"]


def test_container_config_has_the_kubelets_log_path_binds_and_annotations(tmp_path: Path) -> None:
    config, log_dir, files = pod_config(PodSpec("web", uid="u1"), files_root=tmp_path, cgroup_root="x")
    pod = Pod("pod-id", PodSpec("web", uid="u1"), config, log_dir, files)
    container = container_config(pod, ContainerSpec("app", "docker.io/me/app:latest", attempt=1, memory_limit=64))
    assert container.log_path == "app/1.log"
    assert {m.container_path: m.host_path for m in container.mounts} == {
        "/etc/hosts": str(files / "etc-hosts"),
        "/dev/termination-log": str(pod.termination_log("app", 1)),
    }
    assert pod.termination_log("app", 1).read_bytes() == b""  # made empty, before Create, as the kubelet does
    assert container.annotations["io.kubernetes.container.restartCount"] == "1"
    assert container.annotations["io.kubernetes.container.terminationMessagePath"] == "/dev/termination-log"
    assert container.linux.resources.memory_limit_in_bytes == 64


def test_log_lines_join_partial_pieces_per_stream_and_leave_out_an_unfinished_line() -> None:
    lines = parse_log(LOG)
    assert [(line.stream, line.partial) for line in lines][:3] == [
        ("stdout", False),
        ("stdout", True),
        ("stderr", False),
    ]
    assert messages(lines) == [b"hello", b"oops", b"abcdef", b""]
    assert messages(lines, "stdout") == [b"hello", b"abcdef", b""]


@pytest.mark.parametrize("raw", [b"no fields", b"2026-12-06T04:11:10Z stdin F x", b"2026-12-06T04:11:10Z stdout X x"])
def test_a_line_that_is_not_a_cri_log_line_is_an_error_that_quotes_it(raw: bytes) -> None:
    with pytest.raises(CriLogError, match="not a CRI log line"):
        LogLine.parse(raw)


def test_config_version_2_for_1x_names_the_cri_plugin_tables() -> None:
    values = cri_config(1, cni_bin=Path("/b"), cni_conf=Path("/c"))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    assert values[(cri, "sandbox_image")] == PAUSE_REF
    assert values[(cri, "restrict_oom_score_adj")] is True
    assert values[(f"{cri}.cni", "bin_dir")] == "/b"
    assert values[(f"{cri}.containerd.runtimes.wasmvisor", "runtime_type")] == "io.containerd.wasmvisor.v1"
    assert values[(f"{cri}.containerd.runtimes.runc", "runtime_type")] == "io.containerd.runc.v2"


def test_config_version_3_for_2x_sets_the_sandboxer_of_wasmvisor_and_keeps_runc_on_podsandbox() -> None:
    values = cri_config(2, cni_bin=Path("/b"), cni_conf=Path("/c"), sandboxer="shim")
    runtime = 'plugins."io.containerd.cri.v1.runtime"'
    assert values[('plugins."io.containerd.cri.v1.images".pinned_images', "sandbox")] == PAUSE_REF
    assert values[(f"{runtime}.cni", "bin_dirs")] == ["/b"]
    assert values[(f"{runtime}.containerd.runtimes.wasmvisor", "sandboxer")] == "shim"
    assert values[(f"{runtime}.containerd.runtimes.runc", "sandboxer")] == "podsandbox"


def test_2x_also_has_a_wasmvisor_handler_with_the_shim_sandboxer() -> None:
    values = cri_config(2, cni_bin=Path("/b"), cni_conf=Path("/c"))
    table = f'plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{SHIM_SANDBOXER_HANDLER}'
    assert (values[(table, "runtime_type")], values[(table, "sandboxer")]) == ("io.containerd.wasmvisor.v1", "shim")
    assert values[('plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmvisor', "sandboxer")] == "podsandbox"


@pytest.mark.parametrize(("major", "sandboxer"), [(1, "shim"), (2, "vm")])
def test_a_sandboxer_the_line_cannot_use_is_refused(major: int, sandboxer: str) -> None:
    with pytest.raises(CriNodeError, match=f"sandboxer '{sandboxer}'"):
        cri_config(major, cni_bin=Path("/b"), cni_conf=Path("/c"), sandboxer=sandboxer)


def test_a_streamed_exec_status_gives_its_exit_code_or_raises_its_failure() -> None:
    assert ExecResult(status={"status": "Success"}).exit_code == 0
    nonzero = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "4"}]},
    }
    assert ExecResult(status=nonzero).exit_code == 4
    with pytest.raises(StreamError, match="not a wasm module"):
        _ = ExecResult(status={"status": "Failure", "message": "exec /bin/sh: not a wasm module"}).exit_code
