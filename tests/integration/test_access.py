"""Access to a supervisor: its socket is 0600 and root's, a peer of another uid is turned away
even when the file mode would let it in (SO_PEERCRED), and the state it writes is root's alone."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

from tests.integration.harness import HELLO, TASK, Harness
from tests.integration.test_faults import run_hello
from tests.integration.test_task_api import create, pod_task
from wasmvisor.proto import ttrpc_pb2
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.supervisor.rpc.ttrpc import HEADER

NOBODY = 65534
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
"""The system's: the probe runs as nobody, who may not be able to reach the repo's venv."""
PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("refused at connect"); sys.exit(0)
s.settimeout(5)
try:
    s.sendall(bytes.fromhex(sys.argv[2]))
    print("answered" if s.recv(65536) else "closed without answer")
except (ConnectionResetError, BrokenPipeError):
    print("closed without answer")
"""


def probe_as_nobody(path: str) -> str:
    request = ttrpc_pb2.Request(service=TASK, method="Connect", payload=pb.ConnectRequest(id="").SerializeToString())
    data = request.SerializeToString()
    frame = HEADER.pack(len(data), 1, 1, 0) + data
    out = subprocess.run([PYTHON, "-c", PROBE, path, frame.hex()], user=NOBODY, capture_output=True,
                         text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_socket_is_0600_and_peers_of_another_uid_are_turned_away(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "private", {"hello.wasm": HELLO}, ["/hello.wasm"])
    path = h.addresses[0].removeprefix("unix://")
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, os.getuid())
    for d in (h.base, h.sockets):  # let nobody reach the socket file: its own mode must stop them
        os.chmod(d, 0o711)
    assert probe_as_nobody(path) == "refused at connect"
    # Were the file mode loosened, the supervisor itself still checks the peer's uid.
    os.chmod(path, 0o666)
    try:
        assert probe_as_nobody(path) == "closed without answer"
    finally:
        os.chmod(path, 0o600)
    run_hello(h, c, "after-probe")


def test_state_written_in_the_bundle_is_readable_by_root_only(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "modes", {"hello.wasm": HELLO}, ["/hello.wasm"])
    create(h, c, "modes", bundle)
    for name in ("address", "init.pid"):
        info = os.stat(bundle / name)
        assert (stat.S_IMODE(info.st_mode) & 0o077, info.st_uid) == (0, 0), name
    h.call(c, "Start", pb.StartRequest(id="modes"), pb.StartResponse)
    h.call(c, "Wait", pb.WaitRequest(id="modes"), pb.WaitResponse)
    h.call(c, "Delete", pb.DeleteRequest(id="modes"), pb.DeleteResponse)
