"""The `delete` action removes the cgroup a dead supervisor left, killing what still runs in it."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from wasmvisor import cgroups
from wasmvisor.cgroups import v1
from wasmvisor.supervisor.shim import delete
from wasmvisor.supervisor.shim.cliargs import ShimArgs

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or cgroups.detect_version() != 1,
                                reason="needs root and the host's cgroup v1 hierarchies")


def test_delete_action_kills_what_is_left_in_the_cgroup_and_removes_it(tmp_path: Path) -> None:
    top = f"/wasmvisor-unit-delete-{os.getpid()}"
    (tmp_path / "config.json").write_text(json.dumps({"process": {"args": ["/x.wasm"]},
                                                      "linux": {"cgroupsPath": f"{top}/task1"}}))
    cg = cgroups.open_cgroup(f"{top}/task1", "default", "task1")
    assert cg is not None
    cg.create()
    leftover = subprocess.Popen(["sleep", "30"])
    try:
        cg.add(leftover.pid)
        args = ShimArgs(namespace="default", address="/run/containerd/containerd.sock",
                        publish_binary="/usr/bin/containerd", id="task1", bundle=str(tmp_path), action="delete")
        err = io.StringIO()
        assert delete.run(args, stdout=io.BytesIO(), stderr=err) == 0
        assert err.getvalue() == ""
        assert leftover.wait(5) == -9
        assert not cg.exists()
    finally:
        leftover.kill()
        leftover.wait()
        cg.kill_all()
        for controller in v1.hierarchies(cgroups.ROOT):
            for folder in (f"{top}/task1", top):
                try:
                    os.rmdir(f"{cgroups.ROOT}/{controller}{folder}")
                except OSError:
                    pass
