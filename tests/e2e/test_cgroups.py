"""cgroups through containerd: a guest is held to `--memory-limit` (inside wasm and by the kernel),
`ctr task metrics` shows its memory, pause/resume freeze and thaw it, and nothing of its cgroup is left
after delete. The same tests run on a cgroup v1 (hybrid) host and, in the VM of scripts/vm/, on a
cgroup v2 (unified) node under systemd: the few paths and names that differ are chosen by the host's mode."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr
from tests.e2e.host import CGROUP_ROOT, UNIFIED, mounts_under, processes_titled, remove_empty_cgroups
from tests.e2e.host import cgroup_dirs as cgroup_folders
from wasmvisor.image import build_busybox_image, build_oci_tar

ImageRef = Callable[[str], str]
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices")
MIB = 1 << 20


@pytest.fixture(scope="module")
def cgroup_images(ctr: Ctr, guest_wasm: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """This module's own images: memgrow, counter, sleep and busybox, imported into its namespace."""
    out = tmp_path_factory.mktemp("cgroup-images")
    refs: dict[str, str] = {}
    for name in ("memgrow", "memtouch", "counter", "sleep"):
        ref = f"docker.io/wasmvisor-test/cg-{name}:latest"
        tar = out / f"{name}.tar"
        build_oci_tar(tar, ref, {f"/{name}.wasm": guest_wasm[name].read_bytes()}, entrypoint=[f"/{name}.wasm"])
        ctr.import_image(tar)
        refs[name] = ref
    busybox = out / "busybox.tar"
    build_busybox_image(busybox, "docker.io/wasmvisor-test/cg-busybox:latest")
    ctr.import_image(busybox)
    refs["busybox"] = "docker.io/wasmvisor-test/cg-busybox:latest"
    return refs


@pytest.fixture(scope="module", autouse=True)
def _tidy_cgroups(ctr: Ctr) -> Iterator[None]:
    yield
    remove_empty_cgroups(ctr.namespace)


def cgroup_dirs(namespace: str, container_id: str) -> list[Path]:
    """The task's cgroup folders (ctr's default cgroupsPath `/<namespace>/<id>`)."""
    return cgroup_folders(f"{namespace}/{container_id}")


def controllers_of(folders: list[Path]) -> set[str]:
    """The v1 controllers whose hierarchies hold `folders` (`cpu,cpuacct` counts for both)."""
    return {name for d in folders for name in d.parent.parent.name.split(",")}


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_guest_growing_memory_past_memory_limit_gets_minus_1(
    ctr: Ctr, cgroup_images: dict[str, str], container_id: str
) -> None:
    run = ctr.run_container(cgroup_images["memgrow"], container_id, flags=["--memory-limit", str(64 * MIB)])
    assert run.returncode == 0, run.output
    assert run.stdout.splitlines() == ["small grow: ok", "big grow: -1"], run.output


def test_guest_without_memory_limit_can_grow(ctr: Ctr, cgroup_images: dict[str, str], container_id: str) -> None:
    run = ctr.run_container(cgroup_images["memgrow"], container_id)
    assert run.returncode == 0, run.output
    assert run.stdout.splitlines() == ["small grow: ok", "big grow: ok"], run.output


def test_worker_runs_in_the_task_cgroup_with_its_limits_and_nothing_is_left_after_delete(
    ctr: Ctr, cgroup_images: dict[str, str], container_id: str
) -> None:
    started = ctr.run_container(cgroup_images["sleep"], container_id, rm=False,
                                flags=["--detach", "--null-io", "--memory-limit", str(96 * MIB)])
    assert started.returncode == 0, started.output
    pid = ctr.wait_for_task_status(container_id, "RUNNING").pid
    memory = CGROUP_ROOT / ("" if UNIFIED else "memory") / ctr.namespace / container_id
    assert str(pid) in (memory / "cgroup.procs").read_text().split()
    limit = memory / ("memory.max" if UNIFIED else "memory.limit_in_bytes")
    assert int(limit.read_text()) == 96 * MIB
    folders = cgroup_dirs(ctr.namespace, container_id)
    assert len(folders) == 1 if UNIFIED else set(V1_CONTROLLERS) <= controllers_of(folders), folders
    ctr.remove(container_id)
    assert cgroup_dirs(ctr.namespace, container_id) == []


def test_cgroup_of_a_task_whose_supervisor_was_killed_is_removed_by_the_delete_action(
    ctr: Ctr, cgroup_images: dict[str, str], container_id: str
) -> None:
    started = ctr.run_container(cgroup_images["sleep"], container_id, rm=False, flags=["--detach", "--null-io"])
    assert started.returncode == 0, started.output
    ctr.wait_for_task_status(container_id, "RUNNING")
    assert cgroup_dirs(ctr.namespace, container_id)
    supervisors = processes_titled(f"wasmvisor-shim {ctr.namespace}/{container_id}")
    assert len(supervisors) == 1, supervisors
    with ctr.events() as events:
        os.kill(supervisors[0], signal.SIGKILL)
        events.wait_for("/tasks/exit", container_id, timeout=20)  # containerd ran `delete`
    try:
        assert _eventually(lambda: cgroup_dirs(ctr.namespace, container_id) == []), \
            cgroup_dirs(ctr.namespace, container_id)
    finally:
        ctr.remove(container_id)


def test_ctr_run_rm_leaves_no_cgroup_folder(ctr: Ctr, cgroup_images: dict[str, str], container_id: str) -> None:
    run = ctr.run_container(cgroup_images["memgrow"], container_id)
    assert run.returncode == 0, run.output
    assert cgroup_dirs(ctr.namespace, container_id) == []


def test_ctr_task_metrics_shows_memory_usage_of_a_sleeping_guest(
    ctr: Ctr, cgroup_images: dict[str, str], container_id: str
) -> None:
    started = ctr.run_container(cgroup_images["sleep"], container_id, rm=False, flags=["--detach", "--null-io"])
    assert started.returncode == 0, started.output
    ctr.wait_for_task_status(container_id, "RUNNING")
    try:
        table = ctr.run("task", "metrics", container_id, check=True).stdout
        name = "memory.usage " if UNIFIED else "memory.usage_in_bytes "  # ctr's names for v2 and v1 metrics
        usage = [line.split() for line in table.splitlines() if line.startswith(name)]
        assert usage and int(usage[0][1]) > 0, table
        as_json = json.loads(ctr.run("task", "metrics", "--format", "json", container_id, check=True).stdout)
        used = as_json["memory"]["usage"] if UNIFIED else as_json["memory"]["usage"]["usage"]
        assert used > 0, as_json
    finally:
        ctr.remove(container_id)


def test_pause_stops_and_resume_restarts_a_counting_guest(
    ctr: Ctr, cgroup_images: dict[str, str], container_id: str
) -> None:
    with ctr.events() as events:
        run = ctr.start_container(cgroup_images["counter"], container_id)
        try:
            run.wait_for_stdout("3\n", timeout=20)
            assert ctr.run("task", "pause", container_id).returncode == 0
            assert ctr.tasks()[container_id].status == "PAUSED"
            time.sleep(0.2)  # a line in flight may still land
            frozen = len(run.stdout.splitlines())
            time.sleep(0.6)
            assert len(run.stdout.splitlines()) == frozen, "the guest kept printing while paused"
            assert ctr.run("task", "resume", container_id).returncode == 0
            assert ctr.tasks()[container_id].status == "RUNNING"
            assert _eventually(lambda: len(run.stdout.splitlines()) >= frozen + 3), run.stdout
            ctr.kill(container_id, "SIGKILL")
            assert run.wait(timeout=20).returncode == 137
        finally:
            run.kill()
        events.wait_for("/tasks/exit", container_id)
        topics = events.topics(container_id)
    assert topics.index("/tasks/paused") < topics.index("/tasks/resumed") < topics.index("/tasks/exit"), topics


def test_sigkill_ends_a_paused_guest(ctr: Ctr, cgroup_images: dict[str, str], container_id: str) -> None:
    started = ctr.run_container(cgroup_images["sleep"], container_id, rm=False, flags=["--detach", "--null-io"])
    assert started.returncode == 0, started.output
    ctr.wait_for_task_status(container_id, "RUNNING")
    try:
        assert ctr.run("task", "pause", container_id).returncode == 0
        ctr.wait_for_task_status(container_id, "PAUSED")
        refused = ctr.run("task", "rm", container_id)
        assert refused.returncode != 0, refused
        ctr.kill(container_id, "SIGKILL")
        ctr.wait_for_task_status(container_id, "STOPPED")
    finally:
        ctr.remove(container_id)
    assert cgroup_dirs(ctr.namespace, container_id) == []


@pytest.mark.parametrize("path, problem", [
    ("/cgroup.procs/inner", "Not a directory"),
    ("/wv-bad/../../escape", "'..' is not allowed"),
])
def test_cgroup_path_that_cannot_be_created_fails_create_naming_it(
    containerd: PrivateContainerd, ctr: Ctr, cgroup_images: dict[str, str], container_id: str,
    path: str, problem: str,
) -> None:
    run = ctr.run_container(cgroup_images["sleep"], container_id, flags=["--cgroup", path])
    assert run.returncode != 0, run.output
    assert f"linux.cgroupsPath {path}" in run.output and problem in run.output, run.output
    bundle = containerd.bundle_dir(ctr.namespace, container_id)
    assert mounts_under(bundle / "rootfs") == []
    assert container_id not in ctr.tasks()


def test_wasm_guest_pushing_its_worker_past_the_limit_is_oom_killed_and_task_oom_comes_first(
    ctr: Ctr, cgroup_images: dict[str, str], container_id: str
) -> None:
    with ctr.events() as events:
        run = ctr.run_container(cgroup_images["memtouch"], container_id, flags=["--memory-limit", str(64 * MIB)])
        assert run.returncode == 137, run.output
        assert "touched" not in run.stdout
        events.wait_for("/tasks/exit", container_id)
        topics = events.topics(container_id)
    assert topics.index("/tasks/oom") < topics.index("/tasks/exit"), topics
    assert cgroup_dirs(ctr.namespace, container_id) == []


def test_the_same_guest_with_room_to_spare_touches_its_memory(
    ctr: Ctr, cgroup_images: dict[str, str], container_id: str
) -> None:
    run = ctr.run_container(cgroup_images["memtouch"], container_id, flags=["--memory-limit", str(256 * MIB)])
    assert run.returncode == 0, run.output
    assert run.stdout == "touched\n"


def test_native_program_allocating_past_the_limit_is_oom_killed_and_task_oom_comes_first(
    ctr: Ctr, cgroup_images: dict[str, str], new_container_id: Callable[[str], str]
) -> None:
    container_id = new_container_id("")
    script = 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived'
    with ctr.events() as events:
        run = ctr.run_container(cgroup_images["busybox"], container_id, "/bin/sh", "-c", script,
                                flags=["--memory-limit", str(64 * MIB)], timeout=60)
        assert run.returncode == 137, run.output
        assert "survived" not in run.stdout
        events.wait_for("/tasks/exit", container_id)
        topics = events.topics(container_id)
    assert "/tasks/oom" in topics, topics
    assert topics.index("/tasks/oom") < topics.index("/tasks/exit"), topics


def test_oom_kill_of_a_child_is_published_while_the_container_goes_on(
    ctr: Ctr, cgroup_images: dict[str, str], new_container_id: Callable[[str], str]
) -> None:
    container_id = new_container_id("")
    # The subshell is OOM-killed; the shell itself survives, says so, and sleeps until killed, so the
    # TaskOOM seen comes from the cgroup's OOM notification, not from the exit path.
    script = '(x=$(head -c 200000000 /dev/zero | tr "\\0" a)); echo survived; sleep 1000'
    with ctr.events() as events:
        run = ctr.start_container(cgroup_images["busybox"], container_id, "/bin/sh", "-c", script,
                                  flags=["--memory-limit", str(64 * MIB)])
        try:
            run.wait_for_stdout("survived\n", timeout=90)  # 200 MB through `tr` is slow in an emulated VM
            oom = events.wait_for("/tasks/oom", container_id, timeout=5)
            assert ctr.tasks()[container_id].status == "RUNNING"
            ctr.kill(container_id, "SIGKILL")
            assert run.wait(timeout=20).returncode == 137
        finally:
            run.kill()
        events.wait_for("/tasks/exit", container_id)
        topics = events.topics(container_id)
    assert oom.payload.get("container_id") == container_id, oom.line
    assert topics.count("/tasks/oom") == 1, topics
