"""The compiled front of the shim binary answers `start` and `delete` alone where its rules say so,
and hands everything else to the Python shim beside it, unchanged.

The front is copied into a folder of its own with a stand-in Python shim (`<front>-python`, a script
that records its argv, working directory and stdin): an answer given by the front shows no record, a
fallback shows one. A group's supervisor and the node's template are stand-ins too (FakeGroup; a
socket that answers one template request)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.supervisor.shim.fake_group import FakeGroup
from tests.unit.supervisor.shim.test_front_vectors import INSTALLED, SOURCE, _is_elf
from wasmvisor.errors import Code
from wasmvisor.supervisor.shim import start, template_client, template_protocol

NAME = "containerd-shim-wasmvisor-v1"
ADDRESS = "/run/containerd/containerd.sock"


@dataclass
class Front:
    binary: Path
    record: Path
    sockets: Path
    package: Path

    def run(self, bundle: Path, *argv: str, stdin: bytes = b"", env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        environ = {"PATH": "/usr/bin:/bin", "WASMVISOR_SOCKET_DIR": str(self.sockets), **(env or {})}
        return subprocess.run([str(self.binary), *argv], cwd=bundle, input=stdin, capture_output=True,
                              env=environ, timeout=30, check=False)

    def fell_back(self) -> dict[str, object] | None:
        """What the stand-in Python shim was run with, or None if it was not run."""
        if not self.record.exists():
            return None
        recorded: dict[str, object] = json.loads(self.record.read_text())
        return recorded

    def python_command(self) -> list[str]:
        return [sys.executable, str(self.binary) + "-python"]


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Front]:
    folder = tmp_path / "bin"
    folder.mkdir()
    binary = folder / NAME
    if _is_elf(INSTALLED):
        shutil.copy(INSTALLED, binary)
    else:
        compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if compiler is None:
            pytest.skip("no C compiler: no front to test")
        subprocess.run([compiler, "-O2", "-o", str(binary), str(SOURCE)], check=True)
    record = tmp_path / "python-ran.json"
    package = tmp_path / "root" / "wasmvisor"
    package.mkdir(parents=True)
    (package / "mod.py").write_text("x = 1\n")
    shim = folder / f"{NAME}-python"
    # The stand-in names the package root as the fast entry script does, for the front's template path.
    shim.write_text(
        f"#!{sys.executable} -IS\n"
        f"import sys\nsys.path.append({str(package.parent)!r})\n"
        "import json, os\n"
        f"open({str(record)!r}, 'w').write(json.dumps({{'argv': sys.argv[1:], 'cwd': os.getcwd(),"
        " 'stdin': sys.stdin.buffer.read().hex()}))\n"
    )
    shim.chmod(0o755)
    with tempfile.TemporaryDirectory(prefix="wvf-", dir="/tmp") as sockets:  # short: a socket path fits
        yield Front(binary, record, Path(sockets), package)


def bundle_in(tmp_path: Path, config: dict[str, object] | None = None,
              kind: str = "io.containerd.runtime.v2.task") -> Path:
    """A task's bundle where containerd keeps them: `<state>/<kind>/<namespace>/<id>`."""
    bundle = tmp_path / "state" / kind / "default" / "t1"
    bundle.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (bundle / "config.json").write_text(json.dumps(config))
    return bundle


START = ["-namespace", "default", "-address", ADDRESS, "-publish-binary", "/usr/bin/containerd", "-id", "t1", "start"]
DELETE = ["-namespace", "default", "-address", ADDRESS, "-publish-binary", "/usr/bin/containerd", "-id", "t1"]


def test_start_answers_alone_when_the_groups_supervisor_grants_the_claim(front: Front, tmp_path: Path) -> None:
    bundle = bundle_in(tmp_path, {"annotations": {"io.kubernetes.cri.sandbox-id": "pod1"}})
    path = start.socket_path(ADDRESS, "default", "pod1", str(front.sockets))
    with FakeGroup(path) as group:
        done = front.run(bundle, *START)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"unix://{path}".encode(), b"")
    assert (bundle / "address").read_text() == f"unix://{path}"
    assert (bundle / "address").stat().st_mode & 0o777 == 0o600
    assert group.task_ids == ["t1"]
    assert front.fell_back() is None


class FakeTemplate:
    """Listens on the template's socket and answers one request with `pid 4242`, keeping what it got."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.request: template_protocol.Request | None = None
        self.listening_fd_was_sent = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 1)
            while (payload := template_protocol.request_payload(data)) is None:
                chunk = conn.recv(1 << 16)
                data += chunk
                if not chunk:
                    payload = template_protocol.request_payload(data, ended=True)
            self.request = template_protocol.parse_request(payload or b"")
            self.listening_fd_was_sent = len(fds) == 1 and socket.socket(fileno=fds[0]).getsockopt(
                socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            conn.sendall(b"pid 4242\n")

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


def test_start_asks_the_template_alone_when_no_supervisor_serves_the_group(front: Front, tmp_path: Path) -> None:
    bundle = bundle_in(tmp_path)
    stamp = template_client.code_stamp(str(front.package))
    fake = FakeTemplate(template_client.template_path(str(front.sockets), ADDRESS, front.python_command(), stamp))
    try:
        done = front.run(bundle, *START, env={"KEPT": "a=b"})
    finally:
        fake.close()
    path = start.socket_path(ADDRESS, "default", "t1", str(front.sockets))
    assert (done.returncode, done.stdout, done.stderr) == (0, f"unix://{path}".encode(), b"")
    assert front.fell_back() is None
    assert fake.request is not None and fake.listening_fd_was_sent
    assert fake.request.argv == [*START[:-1], "-bundle", str(bundle), "-group", "t1", "-socket", path,
                                 "-socket-fd", "3", "serve"]
    assert (fake.request.cwd, fake.request.env["KEPT"]) == (str(bundle), "a=b")
    assert os.stat(path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("case", "argv", "stdin", "env"), [
    ("no template running", START, b"", {}),
    ("runtime options on stdin", START, b"\x0a\x03abc", {}),
    ("a bootstrap protocol asked for", START, b"", {"WASMVISOR_PROTOCOL": "grpc"}),
    ("the template turned off", START, b"", {"WASMVISOR_TEMPLATE": "0"}),
    ("a flag it does not know", ["-namespace", "n", "-id", "t1", "-new-flag", "x", "start"], b"", {}),
    ("the version", ["-v"], b"", {}),
    ("an internal action", ["-namespace", "n", "-id", "t1", "serve"], b"", {}),
])
def test_start_hands_everything_else_to_python_unchanged(front: Front, tmp_path: Path, case: str,
                                                         argv: list[str], stdin: bytes, env: dict[str, str]) -> None:
    bundle = bundle_in(tmp_path)
    done = front.run(bundle, *argv, stdin=stdin, env=env)
    assert done.returncode == 0, done.stderr
    assert front.fell_back() == {"argv": argv, "cwd": str(bundle), "stdin": stdin.hex()}, case


def test_start_and_delete_hand_a_sandbox_bundle_to_python(front: Front, tmp_path: Path) -> None:
    """containerd 2.x's shim sandboxer keeps its sandboxes elsewhere: not a task, not the front's call."""
    bundle = bundle_in(tmp_path, kind="io.containerd.sandbox.controller.v1.shim")
    front.run(bundle, *START)
    assert front.fell_back() == {"argv": START, "cwd": str(bundle), "stdin": ""}
    front.record.unlink()
    front.run(tmp_path, *DELETE, "-bundle", str(bundle), "delete")
    assert front.fell_back() is not None


def test_start_hands_a_supervisor_that_does_not_answer_to_python(front: Front, tmp_path: Path) -> None:
    bundle = bundle_in(tmp_path)
    with FakeGroup(start.socket_path(ADDRESS, "default", "t1", str(front.sockets)), reply=b"HTTP/1.1 400\r\n\r\n"):
        front.run(bundle, *START)
    assert front.fell_back() is not None


def test_a_refusing_supervisor_is_replaced_through_the_template(front: Front, tmp_path: Path) -> None:
    bundle = bundle_in(tmp_path)
    path = start.socket_path(ADDRESS, "default", "t1", str(front.sockets))
    stamp = template_client.code_stamp(str(front.package))
    with FakeGroup(path, Code.FAILED_PRECONDITION):
        os.unlink(path)  # an ending supervisor removes its socket file before it refuses
        fake = FakeTemplate(template_client.template_path(str(front.sockets), ADDRESS, front.python_command(), stamp))
        try:
            done = front.run(bundle, *START)
        finally:
            fake.close()
    assert (done.returncode, done.stdout) == (0, f"unix://{path}".encode())
    assert front.fell_back() is None


def test_delete_answers_the_empty_response_alone_when_nothing_is_left(front: Front, tmp_path: Path) -> None:
    bundle = bundle_in(tmp_path, {"linux": {"cgroupsPath": "/wasmvisor-front-test-none/t1"}})
    (bundle / "rootfs").mkdir()
    done = front.run(tmp_path, *DELETE, "-bundle", str(bundle), "delete")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert front.fell_back() is None


@pytest.mark.parametrize("left", ["init.pid", "cgroup path it cannot read"])
def test_delete_hands_a_task_with_something_left_to_python(front: Front, tmp_path: Path, left: str) -> None:
    bundle = bundle_in(tmp_path, {"linux": {"cgroupsPath": "system.slice:x:y" if "cgroup" in left else ""}})
    if left == "init.pid":
        (bundle / "init.pid").write_text("1234")
    argv = [*DELETE, "-bundle", str(bundle), "delete"]
    assert front.run(tmp_path, *argv).returncode == 0
    assert front.fell_back() == {"argv": argv, "cwd": str(tmp_path), "stdin": ""}


def test_the_front_reads_the_template_key_from_the_fast_entry_script(front: Front, tmp_path: Path) -> None:
    """The interpreter and package root it names the template by come from entry_script.script_text's
    own text: a change of that text that the front cannot read would send every new group to Python."""
    from wasmvisor.supervisor.shim.entry_script import script_text

    shim = Path(str(front.binary) + "-python")
    shim.write_text(script_text(sys.executable, str(front.package.parent)))
    done = subprocess.run([str(front.binary), "--front-check", "python-command"], capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines() == [sys.executable, str(shim), str(front.package)]
