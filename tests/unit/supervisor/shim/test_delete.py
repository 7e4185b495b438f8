"""The `delete` action: after a supervisor died, containerd gets a DeleteResponse and nothing is left over."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmvisor.proto.containerd.task.v2 import shim_pb2
from wasmvisor.supervisor.shim import delete
from wasmvisor.supervisor.shim.cliargs import ShimArgs
from wasmvisor.supervisor.tasks import mounts

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def _args(bundle: Path, task_id: str = "task1") -> ShimArgs:
    return ShimArgs(namespace="default", address="/run/containerd/containerd.sock",
                    publish_binary="/usr/bin/containerd", id=task_id, bundle=str(bundle), action="delete")


def _run(args: ShimArgs) -> tuple[int, shim_pb2.DeleteResponse, str]:
    out, err = io.BytesIO(), io.StringIO()
    status = delete.run(args, stdout=out, stderr=err)
    response = shim_pb2.DeleteResponse()
    response.ParseFromString(out.getvalue())
    return status, response, err.getvalue()


def _start(title: str | None) -> subprocess.Popen[bytes]:
    """A process that sleeps, under `title` if given; returns once the title is set."""
    code = textwrap.dedent(f"""
        import sys, time
        title = {title!r}
        if title:
            import setproctitle
            setproctitle.setproctitle(title)
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def test_bundle_with_a_pid_file_but_no_worker_gives_a_killed_response(tmp_path: Path) -> None:
    (tmp_path / delete.PID_FILE).write_text("0")  # a task was created; its worker is gone
    before = time.time_ns()
    status, response, err = _run(_args(tmp_path))
    assert status == 0 and err == ""
    assert (response.pid, response.exit_status) == (0, 137)
    assert before <= response.exited_at.ToNanoseconds() <= time.time_ns()


def test_bundle_of_a_task_the_supervisor_deleted_gets_the_empty_response(tmp_path: Path) -> None:
    # No init.pid: containerd no longer holds the task and reads nothing of the answer.
    out, err = io.BytesIO(), io.StringIO()
    assert delete.run(_args(tmp_path), stdout=out, stderr=err) == 0
    assert (out.getvalue(), err.getvalue()) == (b"", "")
    assert shim_pb2.DeleteResponse.FromString(out.getvalue()) == shim_pb2.DeleteResponse()


def test_bundle_that_is_already_gone_still_gets_a_response(tmp_path: Path) -> None:
    status, response, _ = _run(_args(tmp_path / "removed"))
    assert status == 0 and response == shim_pb2.DeleteResponse()


def test_garbage_pid_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / delete.PID_FILE).write_text("not a pid")
    assert _run(_args(tmp_path))[1].pid == 0


def test_leftover_worker_is_killed(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    worker = _start(delete.worker_title("default", "task1"))
    processes.append(worker)
    (tmp_path / delete.PID_FILE).write_text(str(worker.pid))
    status, response, err = _run(_args(tmp_path))
    assert status == 0 and err == ""
    assert response.pid == worker.pid and response.exit_status == 137
    assert worker.wait(timeout=5) == -9


def test_unrelated_process_behind_a_recycled_pid_is_left_alone(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]],
) -> None:
    other = _start(None)
    same_prefix = _start(delete.worker_title("default", "task10"))  # another task's worker
    processes += [other, same_prefix]
    for proc in (other, same_prefix):
        (tmp_path / delete.PID_FILE).write_text(str(proc.pid))
        _run(_args(tmp_path))
    time.sleep(0.1)
    assert other.poll() is None and same_prefix.poll() is None


def test_worker_title_is_matched_exactly() -> None:
    assert delete.process_title(os.getpid()) is not None
    assert delete.process_title(2**22 + 12345) is None
    assert not delete.kill_worker(os.getpid(), "wasmvisor-worker default/nothing-like-this")


@needs_root
def test_mounted_rootfs_is_unmounted(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    mounts.mount_all([mounts.MountSpec(type="tmpfs", source="tmpfs", options=("size=1m",))], str(rootfs))
    try:
        assert mounts.is_mounted(str(rootfs))
        status, _, err = _run(_args(tmp_path))
        assert status == 0 and err == ""
        assert not mounts.is_mounted(str(rootfs))
    finally:
        mounts.unmount_all(str(rootfs))


def test_shim_binary_delete_writes_only_the_protobuf(tmp_path: Path) -> None:
    (tmp_path / delete.PID_FILE).write_text("0")
    result = subprocess.run(
        [sys.executable, "-m", "wasmvisor.supervisor.shim.main", "-namespace", "default", "-address", "/a.sock",
         "-publish-binary", "/c", "-id", "task1", "-bundle", str(tmp_path), "delete"],
        cwd=tmp_path, capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and result.stderr == b""
    response = shim_pb2.DeleteResponse()
    response.ParseFromString(result.stdout)
    assert response.exit_status == 137


def test_delete_defaults_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  processes: list[subprocess.Popen[bytes]]) -> None:
    worker = _start(delete.worker_title("default", "task1"))
    processes.append(worker)
    (tmp_path / delete.PID_FILE).write_text(f"{worker.pid}\n")
    monkeypatch.chdir(tmp_path)
    _, response, _ = _run(ShimArgs(namespace="default", id="task1", action="delete"))
    assert response.pid == worker.pid
    assert worker.wait(timeout=5) == -9
