"""The node's supervisor template (supervisor/shim/template_server.py): a new group's supervisor is forked from it,
and its zygote from the supervisor; a missing, killed or disabled template never fails a start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.host import is_alive, process_titles
from tests.integration.harness import HELLO, SHIM, SLEEPER, Harness
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.supervisor.shim import template_protocol


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def children(pid: int) -> dict[int, str]:
    titles = process_titles()
    return {p: t for p, t in titles.items() if is_alive(p) and ppid(p) == pid}


def run_group(h: Harness, task_id: str, module: bytes = HELLO, env: dict[str, str] | None = None) -> tuple[int, object]:
    """Start a group of its own for `task_id`, create and run it; returns (supervisor pid, client)."""
    bundle = h.bundle(task_id, {"m.wasm": module}, ["/m.wasm"])
    client = h.client(h.start_shim(bundle, task_id, env_extra=env))
    out = bundle / "stdout"
    out.touch()
    h.call(client, "Create", pb.CreateTaskRequest(id=task_id, bundle=str(bundle), stdout=str(out)),
           pb.CreateTaskResponse)
    h.call(client, "Start", pb.StartRequest(id=task_id), pb.StartResponse)
    shim_pid = h.call(client, "Connect", pb.ConnectRequest(id=task_id), pb.ConnectResponse).shim_pid
    return shim_pid, client


def frame(payload: bytes) -> bytes:
    return b"%d\n" % len(payload) + payload


def finish(h: Harness, client: object, task_id: str) -> int:
    status = h.call(client, "Wait", pb.WaitRequest(id=task_id), pb.WaitResponse).exit_status
    h.call(client, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)
    return status


def template_after_a_group(h: Harness, task_id: str) -> tuple[int, str]:
    """Run a group of its own to its end: the template that forked its supervisor, and its socket."""
    shim, client = run_group(h, task_id)
    assert finish(h, client, task_id) == 0
    [template] = h.templates()
    return template, process_titles()[template].split()[-1]


def test_a_new_groups_supervisor_is_forked_by_the_template_and_forks_its_own_zygote(harness: Harness) -> None:
    h = harness
    shim, client = run_group(h, "first")
    assert finish(h, client, "first") == 0
    assert (h.base / "bundles" / "first" / "stdout").read_bytes() == b"hello\n"
    [template] = h.templates()
    assert ppid(shim) == template
    title = process_titles()[template]
    assert title.startswith(f"wasmvisor-template -address {h.base / 'containerd.sock'} {h.sockets}/")
    assert "wasmvisor-zygote" in children(shim).values()
    assert process_titles()[shim] == "wasmvisor-shim itest/first"


def test_later_groups_reuse_the_one_template(harness: Harness) -> None:
    h = harness
    shims = []
    for name in ("g1", "g2", "g3"):
        shim, client = run_group(h, name)
        assert finish(h, client, name) == 0
        shims.append(shim)
    [template] = h.templates()
    assert {ppid(s) for s in shims if is_alive(s)} <= {template}
    assert len(set(shims)) == 3


def test_a_supervisor_that_shuts_down_is_reaped_by_the_template(harness: Harness) -> None:
    h = harness
    shim, client = run_group(h, "reaped")
    assert finish(h, client, "reaped") == 0
    h.run(client.call("containerd.task.v2.Task", "Shutdown", pb.ShutdownRequest(id="reaped"), _empty()),
          timeout=5)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{shim}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{shim}"), "the ended supervisor is left as a zombie"
    assert h.templates(), "the template ends only when idle"


def test_a_killed_template_is_replaced_and_running_guests_are_untouched(harness: Harness) -> None:
    h = harness
    shim, sleeper = run_group(h, "sleeper", SLEEPER)
    [old] = h.templates()
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while is_alive(old) and time.monotonic() < deadline:
        time.sleep(0.02)
    new_shim, client = run_group(h, "after")
    assert finish(h, client, "after") == 0
    [new] = h.templates()
    assert new != old and ppid(new_shim) == new
    assert is_alive(shim)
    state = h.call(sleeper, "State", pb.StateRequest(id="sleeper"), pb.StateResponse)
    assert state.status == 2  # RUNNING
    h.call(sleeper, "Kill", pb.KillRequest(id="sleeper", signal=9), _empty())
    assert finish(h, sleeper, "sleeper") == 137


def test_with_the_template_disabled_the_supervisor_is_spawned(harness: Harness) -> None:
    h = harness
    shim, client = run_group(h, "plain", env={"WASMVISOR_TEMPLATE": "0"})
    assert finish(h, client, "plain") == 0
    assert h.templates() == []
    assert "wasmvisor-zygote" in children(shim).values()


def test_a_bad_request_gets_an_error_answer_and_the_template_keeps_serving(harness: Harness) -> None:
    h = harness
    template, path = template_after_a_group(h, "before")
    magic = template_protocol.MAGIC.encode()
    bad = [b"not a length\n", b"5\nshort",
           frame(b"\0".join([magic, b"/", b"1", b"start"])),
           frame(b"\0".join([magic, b"/", b"3", b"-id", b"x", b"serve"]))]  # no -namespace
    for request in bad:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(request)
            if request == b"5\nshort":
                sock.shutdown(socket.SHUT_WR)
            answer = sock.makefile("rb").readline()
        assert answer.startswith(b"error "), (request, answer)
    shim2, client2 = run_group(h, "after-bad")
    assert finish(h, client2, "after-bad") == 0
    assert ppid(shim2) == template


def _empty():  # type: ignore[no-untyped-def]
    from google.protobuf.empty_pb2 import Empty

    return Empty


def test_an_idle_template_exits_and_removes_its_socket(harness: Harness) -> None:
    h = harness
    shim, client = run_group(h, "idle", env={"WASMVISOR_TEMPLATE_IDLE_SECONDS": "1"})
    assert finish(h, client, "idle") == 0
    [template] = h.templates()
    path = process_titles()[template].split()[-1]
    assert os.path.exists(path)
    h.run(client.call("containerd.task.v2.Task", "Shutdown", pb.ShutdownRequest(id="idle"), _empty()),
          timeout=5)
    deadline = time.monotonic() + 10
    while is_alive(template) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(template), "the template outlived its idle time"
    assert not os.path.exists(path)


def test_a_client_that_says_nothing_does_not_hold_up_a_new_group(harness: Harness) -> None:
    h = harness
    template, path = template_after_a_group(h, "first")
    with socket.socket(socket.AF_UNIX) as silent:
        silent.connect(path)  # and sends nothing
        shim2, client2 = run_group(h, "second")
        assert ppid(shim2) == template
        assert finish(h, client2, "second") == 0
        silent.setblocking(False)
        try:
            answer = silent.recv(100)
        except BlockingIOError:
            answer = None
        assert answer is None, f"the silent client was answered (and dropped) before the new group: {answer!r}"


def test_the_template_exits_when_the_containerd_that_started_it_is_gone(harness: Harness) -> None:
    """`start`'s parent is containerd; here a stand-in process runs `start` and is then killed."""
    h = harness
    bundle = h.bundle("orphaned", {"s.wasm": SLEEPER}, ["/s.wasm"])
    out = h.base / "address"
    argv = [str(SHIM), "-namespace", "itest", "-address", str(h.base / "containerd.sock"),
            "-publish-binary", "/bin/false", "-id", "orphaned", "start"]
    script = ("import subprocess, sys, time\n"
              f"r = subprocess.run({argv!r}, capture_output=True, stdin=subprocess.DEVNULL)\n"
              f"open({str(out)!r}, 'wb').write(r.stdout)\n"
              "time.sleep(600)\n")
    env = dict(os.environ, TTRPC_ADDRESS=h.events_sock, WASMVISOR_SOCKET_DIR=str(h.sockets))
    containerd = subprocess.Popen([sys.executable, "-c", script], cwd=bundle, env=env)
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.read_bytes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        address = out.read_text()
        assert address.startswith("unix://"), address
        h.addresses.append(address)
        h.started.setdefault(address, []).append("orphaned")
        client = h.client(address)
        h.call(client, "Create", pb.CreateTaskRequest(id="orphaned", bundle=str(bundle)), pb.CreateTaskResponse)
        h.call(client, "Start", pb.StartRequest(id="orphaned"), pb.StartResponse)
        [template] = h.templates()  # now that the supervisor it forked has its own title
        path = process_titles()[template].split()[-1]
    finally:
        containerd.kill()
        containerd.wait()
    deadline = time.monotonic() + 10
    while is_alive(template) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(template), "the template outlived the containerd it served"
    assert not os.path.exists(path)
    # The supervisor it forked runs on: its task is still there to kill.
    h.call(client, "Kill", pb.KillRequest(id="orphaned", signal=signal.SIGKILL), _empty())
    assert finish(h, client, "orphaned") == 137
