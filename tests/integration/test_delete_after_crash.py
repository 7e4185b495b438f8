"""containerd's `delete` after a supervisor died cleans up what it left: a native container whose
process exec'd another program (so it carries neither the worker's title nor its first program's)
is found by the pid and start time recorded in its bundle, and killed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.host import is_alive
from tests.integration.harness import SHIM, Harness
from tests.integration.test_task_api import create
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb


def cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def test_delete_kills_a_native_container_that_exec_d_after_its_supervisor_was_killed(harness: Harness) -> None:
    h = harness
    bundle = h.bundle("native", {"bin/busybox": Path("/bin/busybox").read_bytes()},
                      ["/bin/busybox", "sh", "-c", "exec /bin/busybox sleep 600"])
    (bundle / "rootfs" / "bin" / "busybox").chmod(0o755)
    c = h.client(h.start_shim(bundle, "native"))
    supervisor = h.call(c, "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid
    create(h, c, "native", bundle)
    pid = int(h.call(c, "Start", pb.StartRequest(id="native"), pb.StartResponse).pid)
    deadline = time.monotonic() + 10
    while cmdline(pid)[:2] != [b"/bin/busybox", b"sleep"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cmdline(pid)[:2] == [b"/bin/busybox", b"sleep"], cmdline(pid)

    try:
        os.kill(supervisor, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while is_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert is_alive(pid), "the container must outlive its supervisor, as with runc"

        result = subprocess.run(
            [str(SHIM), "-namespace", "itest", "-address", str(h.base / "containerd.sock"), "-publish-binary",
             "/bin/false", "-id", "native", "-bundle", str(bundle), "delete"],
            cwd=bundle, capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0 and result.stderr == b"", result.stderr
        response = pb.DeleteResponse.FromString(result.stdout)
        assert (response.pid, response.exit_status) == (pid, 137)
        deadline = time.monotonic() + 10
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not is_alive(pid), f"delete left the container process {pid} ({cmdline(pid)}) running"
    finally:
        if is_alive(pid):  # not left behind by a failed run
            os.kill(pid, signal.SIGKILL)
