"""The worker writes `linux.sysctl` and `process.oomScoreAdj` through /proc (here a stand-in
folder), refuses net.* keys in the host's network namespace, and warns of LSM labels it does
not apply."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from wasmvisor.errors import InvalidArgument
from wasmvisor.worker.container import warn_unapplied_security_labels
from wasmvisor.worker.spec_linux import Namespace
from wasmvisor.worker.sysctl import check_network_namespace, write_oom_score_adj, write_sysctl


def fake_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "shmmax").write_text("0")
    (proc / "self").mkdir()
    (proc / "self" / "oom_score_adj").write_text("0")
    return proc


def test_each_key_is_written_to_its_proc_sys_file(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    write_sysctl((("kernel.shmmax", "65536"),), proc=str(proc))
    assert (proc / "sys" / "kernel" / "shmmax").read_text() == "65536"


def test_a_key_the_kernel_does_not_have_fails_naming_it(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    with pytest.raises(InvalidArgument, match="linux.sysctl kernel.shm_nope: no such setting"):
        write_sysctl((("kernel.shm_nope", "1"),), proc=str(proc))


def test_oom_score_adj_is_written_for_the_process(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    write_oom_score_adj(-250, proc=str(proc))
    assert (proc / "self" / "oom_score_adj").read_text() == "-250"
    write_oom_score_adj(None, proc=str(tmp_path / "nowhere"))  # absent: nothing written


def test_net_sysctl_in_the_hosts_own_network_namespace_is_refused() -> None:
    host = Namespace("network", 0x40000000, "/proc/self/ns/net", 0)
    with pytest.raises(InvalidArgument, match="net.ipv4.ip_forward: not allowed in the host's network namespace"):
        check_network_namespace((("net.ipv4.ip_forward", "1"),), (host,))
    check_network_namespace((("kernel.shmmax", "1"),), (host,))  # not a net.* key: fine
    check_network_namespace((("net.ipv4.ip_forward", "1"),), (Namespace("network", 0x40000000),))  # a new one


def test_apparmor_profile_and_selinux_label_are_warned_of_not_refused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        found = warn_unapplied_security_labels({"apparmorProfile": "cri-containerd.apparmor.d",
                                                "selinuxLabel": "", "args": ["x"]})
    assert found == ["apparmorProfile"]
    assert "process.apparmorProfile 'cri-containerd.apparmor.d' is not applied" in caplog.text
