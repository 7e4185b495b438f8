"""`wasmvisor ps` on a node running tasks through a private containerd: a wasm task and a native one with
their state, pid, engine and PSS; a stopped supervisor shown as unresponsive instead of waited for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr

CLI = Path(sys.executable).parent / "wasmvisor"


def ps(containerd: PrivateContainerd, ctr: Ctr, *flags: str) -> subprocess.CompletedProcess[str]:
    socket_dir = containerd.shim_socket(ctr.namespace, "x").parent
    return subprocess.run([str(CLI), "ps", "--socket-dir", str(socket_dir), *flags], capture_output=True,
                          text=True, timeout=30)


def ps_json(containerd: PrivateContainerd, ctr: Ctr, *flags: str) -> dict[str, Any]:
    done = ps(containerd, ctr, "--json", *flags)
    assert done.returncode == 0, done.stderr
    snap: dict[str, Any] = json.loads(done.stdout)
    return snap


def group(snap: dict[str, Any], name: str) -> dict[str, Any]:
    found = [g for g in snap["groups"] if g["name"] == name]
    assert len(found) == 1, f"group {name} in {[g['name'] for g in snap['groups']]}"
    return found[0]


@pytest.fixture
def detached(ctr: Ctr) -> Iterator[Callable[..., int]]:
    """Run a container detached; removed at the end of the test. Returns its task's pid."""
    started: list[str] = []

    def run(image: str, container_id: str, *args: str) -> int:
        done = ctr.run_container(image, container_id, *args, rm=False, flags=["--detach", "--null-io"])
        assert done.returncode == 0, done.output
        started.append(container_id)
        return ctr.wait_for_task_status(container_id, "RUNNING").pid

    yield run
    for container_id in started:
        ctr.remove(container_id)


def test_ps_shows_a_wasm_task_and_a_native_one_with_state_pid_engine_and_pss(
    containerd: PrivateContainerd, ctr: Ctr, image: Callable[[str], str], detached: Callable[..., int],
    new_container_id: Callable[[str], str],
) -> None:
    wasm_id, native_id = new_container_id("wasm"), new_container_id("native")
    wasm_pid = detached(image("sleep"), wasm_id)
    native_pid = detached(image("busybox"), native_id, "sleep", "600")

    snap = ps_json(containerd, ctr)

    for task_id, pid, engine, module in ((wasm_id, wasm_pid, "wasmtime", "/sleep.wasm"),
                                         (native_id, native_pid, "native", "sleep")):
        g = group(snap, f"{ctr.namespace}/{task_id}")
        assert g["status"] == "ok" and g["supervisor"]["pss_bytes"] > 0
        [task] = g["tasks"]
        assert (task["id"], task["state"], task["pid"], task["engine"]) == (task_id, "running", pid, engine)
        assert task["module"] == module and task["pss_bytes"] > 0 and task["exit_status"] is None
    assert group(snap, f"{ctr.namespace}/{wasm_id}")["tasks"][0]["digest"].startswith("sha256:")
    text = ps(containerd, ctr, "-n", ctr.namespace).stdout
    assert all(f" {ctr.namespace}/" in line for line in text.splitlines() if "GROUP" in line), text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(f"    {ctr.namespace}/")}
    assert rows[f"{ctr.namespace}/{wasm_id}"][1:4] == ["running", str(wasm_pid), "wasmtime"], text
    assert rows[f"{ctr.namespace}/{native_id}"][1:4] == ["running", str(native_pid), "native"], text


def test_a_stopped_supervisor_shows_as_unresponsive_and_does_not_hang_ps(
    containerd: PrivateContainerd, ctr: Ctr, image: Callable[[str], str], detached: Callable[..., int],
    container_id: str,
) -> None:
    pid = detached(image("sleep"), container_id)
    name = f"{ctr.namespace}/{container_id}"
    supervisor = group(ps_json(containerd, ctr), name)["supervisor"]["pid"]
    os.kill(supervisor, signal.SIGSTOP)
    try:
        snap = ps_json(containerd, ctr, "--timeout", "0.5")
        text = ps(containerd, ctr, "--timeout", "0.5").stdout
    finally:
        os.kill(supervisor, signal.SIGCONT)

    stopped = group(snap, name)
    assert (stopped["status"], stopped["error"]) == ("unresponsive", "no answer within 0.5 s")
    assert stopped["supervisor"]["pid"] == supervisor
    [task] = stopped["tasks"]  # from /proc: the zygote's worker
    assert (task["id"], task["state"], task["pid"]) == (container_id, "unknown", pid) and task["pss_bytes"] > 0
    assert f"GROUP {name}  supervisor {supervisor}" in text and "UNRESPONSIVE: no answer within 0.5 s" in text
