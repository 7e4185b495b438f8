"""containerd gives up on a group whose first call failed (containerd 2.1 with `sandboxer = "shim"` and a
shim that refused CreateSandbox: `failed to shutdown sandbox`, then `cleaning up dead shim`): it runs the
binary's `delete` for the id, and the supervisor that `start` launched for it must not stay behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.e2e.host import is_alive
from tests.integration.harness import SHIM, Harness, ended
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.supervisor.lifetime import CLAIM_SECONDS

GONE_WITHIN = CLAIM_SECONDS / 3
"""Well before the claim `start` made would expire on its own (what ended the supervisor before)."""


def _delete(h: Harness, bundle: Path, task_id: str) -> bytes:
    env = dict(os.environ, TTRPC_ADDRESS=h.events_sock, WASMVISOR_SOCKET_DIR=str(h.sockets))
    out = subprocess.run(
        [str(SHIM), "-namespace", "itest", "-address", str(h.base / "containerd.sock"),
         "-publish-binary", "/bin/false", "-id", task_id, "-bundle", str(bundle), "delete"],
        cwd=bundle, env=env, capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _sandbox_bundle(h: Harness, sandbox_id: str) -> Path:
    """A bundle as containerd 2.x's shim sandboxer makes it: no config.json, an empty rootfs."""
    bundle = h.base / "sandboxes" / sandbox_id
    (bundle / "rootfs").mkdir(parents=True)
    return bundle


def test_delete_of_a_group_that_never_got_a_task_ends_its_supervisor(harness: Harness) -> None:
    h = harness
    bundle = _sandbox_bundle(h, "failedpod")
    address = h.start_shim(bundle, "failedpod")
    path = address.removeprefix("unix://")
    pid = h.call(h.client(address), "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid
    assert is_alive(pid)
    assert _delete(h, bundle, "failedpod") == b""  # nothing was created: the empty DeleteResponse
    assert ended(pid, path, GONE_WITHIN), "the supervisor of a group containerd gave up on is still running"



def test_delete_answered_by_the_compiled_front_also_ends_the_idle_supervisor(harness: Harness) -> None:
    # A task's bundle, where containerd keeps them (`<state>/io.containerd.runtime.v2.task/<ns>/<id>`): the
    # compiled front answers this `delete` itself (nothing of the task is left), and must still tell the
    # group's supervisor, as the Python `delete` does.
    h = harness
    bundle = h.base / "state" / "io.containerd.runtime.v2.task" / "itest" / "failedtask"
    (bundle / "rootfs").mkdir(parents=True)
    address = h.start_shim(bundle, "failedtask")
    path = address.removeprefix("unix://")
    pid = h.call(h.client(address), "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid
    assert is_alive(pid)
    assert _delete(h, bundle, "failedtask") == b""
    assert ended(pid, path, GONE_WITHIN), "the supervisor of a task containerd gave up on is still running"
