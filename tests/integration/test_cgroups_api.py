"""Pause, Resume, Stats, Update, Pids and the cgroup at Create, through a real supervisor over ttrpc
(cgroup v1 on this host; each task's cgroup is /<namespace>/<id> under a test-only folder)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from google.protobuf.any_pb2 import Any
from google.protobuf.empty_pb2 import Empty

from tests.integration.harness import SLEEPER, Harness
from tests.integration.test_task_api import create, expect_error
from wasmvisor import cgroups
from wasmvisor.errors import Code
from wasmvisor.proto.cgroups.v1 import metrics_pb2
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.supervisor.tasks.cgroup import LINUX_RESOURCES_TYPE

pytestmark = pytest.mark.skipif(cgroups.detect_version() != 1, reason="needs the host's cgroup v1 hierarchies")
MEMORY = Path("/sys/fs/cgroup/memory")


def cgroup_task(h: Harness, task_id: str, cgroups_path: str, resources: dict | None = None):  # type: ignore[no-untyped-def]
    bundle = h.bundle(task_id, {"sleep.wasm": SLEEPER}, ["/sleep.wasm"])
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"] = {"cgroupsPath": cgroups_path, "resources": resources or {}}
    (bundle / "config.json").write_text(json.dumps(spec))
    client = h.client(h.start_shim(bundle, task_id))
    return bundle, client


@pytest.fixture
def base_path() -> str:
    path = f"/wasmvisor-itest-{os.getpid()}-{time.monotonic_ns()}"
    yield path
    for controller in ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices"):
        try:
            os.rmdir(f"/sys/fs/cgroup/{controller}{path}")
        except OSError:
            pass


def test_pause_resume_stats_update_and_pids_of_a_running_task(harness: Harness, base_path: str) -> None:
    h = harness
    path = f"{base_path}/t1"
    bundle, c = cgroup_task(h, "t1", path, {"memory": {"limit": 128 << 20}})
    created = create(h, c, "t1", bundle)
    assert str(created.pid) in (MEMORY / path.lstrip("/") / "cgroup.procs").read_text().split()
    assert int((MEMORY / path.lstrip("/") / "memory.limit_in_bytes").read_text()) == 128 << 20
    h.call(c, "Start", pb.StartRequest(id="t1"), pb.StartResponse)

    pids = h.call(c, "Pids", pb.PidsRequest(id="t1"), pb.PidsResponse)
    assert created.pid in [p.pid for p in pids.processes]

    stats = h.call(c, "Stats", pb.StatsRequest(id="t1"), pb.StatsResponse)
    assert stats.stats.type_url == "io.containerd.cgroups.v1.Metrics"
    metrics = metrics_pb2.Metrics.FromString(stats.stats.value)
    assert metrics.memory.usage.usage > 0 and metrics.memory.usage.limit == 128 << 20

    h.call(c, "Pause", pb.PauseRequest(id="t1"), Empty)
    state = h.call(c, "State", pb.StateRequest(id="t1"), pb.StateResponse)
    assert state.status == types_pb.PAUSED
    assert (Path("/sys/fs/cgroup/freezer") / path.lstrip("/") / "freezer.state").read_text().strip() == "FROZEN"
    expect_error(h, c, "Pause", pb.PauseRequest(id="t1"), Code.FAILED_PRECONDITION, "PAUSED => PAUSED")
    expect_error(h, c, "Delete", pb.DeleteRequest(id="t1"), Code.FAILED_PRECONDITION, "PAUSED => DELETING")
    h.call(c, "Resume", pb.ResumeRequest(id="t1"), Empty)
    state = h.call(c, "State", pb.StateRequest(id="t1"), pb.StateResponse)
    assert state.status == types_pb.RUNNING
    expect_error(h, c, "Resume", pb.ResumeRequest(id="t1"), Code.FAILED_PRECONDITION, "RUNNING => RUNNING")

    update = Any(type_url=LINUX_RESOURCES_TYPE, value=json.dumps({"memory": {"limit": 256 << 20}}).encode())
    h.call(c, "Update", pb.UpdateTaskRequest(id="t1", resources=update), Empty)
    assert int((MEMORY / path.lstrip("/") / "memory.limit_in_bytes").read_text()) == 256 << 20
    windows = Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/WindowsResources", value=b"{}")
    expect_error(h, c, "Update", pb.UpdateTaskRequest(id="t1", resources=windows), Code.INVALID_ARGUMENT,
                 "WindowsResources")

    h.call(c, "Kill", pb.KillRequest(id="t1", signal=9), Empty)
    h.call(c, "Wait", pb.WaitRequest(id="t1"), pb.WaitResponse)
    h.call(c, "Delete", pb.DeleteRequest(id="t1"), pb.DeleteResponse)
    assert not (MEMORY / path.lstrip("/")).exists()
    assert (MEMORY / base_path.lstrip("/")).is_dir()  # the parent stays, as with runc
    deadline = time.monotonic() + 5
    while "/tasks/delete" not in h.events.topics("t1") and time.monotonic() < deadline:
        time.sleep(0.02)
    topics = h.events.topics("t1")
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/paused", "/tasks/resumed", "/tasks/exit",
                      "/tasks/delete"], topics


def test_sigkill_ends_a_paused_task(harness: Harness, base_path: str) -> None:
    h = harness
    bundle, c = cgroup_task(h, "t2", f"{base_path}/t2")
    create(h, c, "t2", bundle)
    h.call(c, "Start", pb.StartRequest(id="t2"), pb.StartResponse)
    h.call(c, "Pause", pb.PauseRequest(id="t2"), Empty)
    h.call(c, "Kill", pb.KillRequest(id="t2", signal=9), Empty)
    waited = h.call(c, "Wait", pb.WaitRequest(id="t2"), pb.WaitResponse, timeout=10)
    assert waited.exit_status == 137
    h.call(c, "Delete", pb.DeleteRequest(id="t2"), pb.DeleteResponse)


def test_pause_of_a_created_task_is_failed_precondition(harness: Harness, base_path: str) -> None:
    h = harness
    bundle, c = cgroup_task(h, "t3", f"{base_path}/t3")
    create(h, c, "t3", bundle)
    expect_error(h, c, "Pause", pb.PauseRequest(id="t3"), Code.FAILED_PRECONDITION, "CREATED => PAUSED")
    h.call(c, "Delete", pb.DeleteRequest(id="t3"), pb.DeleteResponse)


def test_create_with_a_cgroups_path_under_a_file_fails_naming_it_and_unmounts(harness: Harness) -> None:
    h = harness
    bundle, c = cgroup_task(h, "t4", "/cgroup.procs/t4")
    with pytest.raises(Exception) as info:
        create(h, c, "t4", bundle)
    assert getattr(info.value, "code", None) == Code.INVALID_ARGUMENT, info.value
    assert "linux.cgroupsPath /cgroup.procs/t4: cannot create /sys/fs/cgroup/" in str(info.value)
    assert h.events.topics("t4") == []
    expect_error(h, c, "State", pb.StateRequest(id="t4"), Code.NOT_FOUND)


def test_stats_of_a_task_without_linux_section_is_unimplemented(harness: Harness) -> None:
    h = harness
    bundle = h.bundle("t5", {"sleep.wasm": SLEEPER}, ["/sleep.wasm"])
    c = h.client(h.start_shim(bundle, "t5"))
    create(h, c, "t5", bundle)
    expect_error(h, c, "Stats", pb.StatsRequest(id="t5"), Code.UNIMPLEMENTED, "no cgroup")
    expect_error(h, c, "Pause", pb.PauseRequest(id="t5"), Code.UNIMPLEMENTED, "no cgroup")
    h.call(c, "Delete", pb.DeleteRequest(id="t5"), pb.DeleteResponse)
