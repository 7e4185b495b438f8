"""Priming the kernel's cgroup migration lock (wasmvisor.cgroups.migration)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasmvisor.cgroups import migration

V1 = "12:pids:/user.slice\n11:memory:/user.slice\n1:name=systemd:/init.scope\n0::/init.scope\n"
V2 = "0::/system.slice/containerd.service\n"


def test_on_v1_the_first_mounted_hierarchy_of_this_process_is_used(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    assert migration.own_procs_file(V1, str(tmp_path)) == str(tmp_path / "memory" / "user.slice" / "cgroup.procs")


def test_on_v2_the_unified_cgroup_is_used(tmp_path: Path) -> None:
    (tmp_path / "cgroup.procs").write_text("")
    assert migration.own_procs_file(V2, str(tmp_path)) == str(
        tmp_path / "system.slice" / "containerd.service" / "cgroup.procs")


def test_without_any_hierarchy_there_is_nothing_to_write(tmp_path: Path) -> None:
    assert migration.own_procs_file(V1, str(tmp_path)) is None
    assert migration.own_procs_file("", str(tmp_path)) is None


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup"), reason="writes a real cgroup.procs")
def test_prime_moves_this_process_nowhere() -> None:
    before = Path("/proc/self/cgroup").read_text()
    thread = migration.prime()
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()
    assert Path("/proc/self/cgroup").read_text() == before
