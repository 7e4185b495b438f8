"""The `start` action: containerd gets one address per group, and a supervisor is listening behind it.

The real daemon is replaced by a small script (the launcher is injectable) that records what it got,
accepts connections on the inherited fd 3 and grants every claim; a running supervisor found by
`start` is a FakeGroup that answers claims as told.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.supervisor.shim.fake_group import FakeGroup
from wasmvisor.errors import Code, InvalidArgument
from wasmvisor.supervisor.shim import start
from wasmvisor.supervisor.shim.cliargs import ShimArgs, parse_args

ARGS = ShimArgs(namespace="default", address="/run/containerd/containerd.sock",
                publish_binary="/usr/bin/containerd", id="task1", action="start")

FAKE_DAEMON = textwrap.dedent("""
    import json, os, socket, sys
    record = {
        "argv": sys.argv[1:], "cwd": os.getcwd(), "sid": os.getsid(0), "pid": os.getpid(),
        "ttrpc": os.environ.get("TTRPC_ADDRESS"),
        "stdio": [os.readlink(f"/proc/self/fd/{n}") for n in (0, 1, 2)],
    }
    listener = socket.socket(fileno=3)
    record["listening"] = listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    with open(os.environ["FAKE_DAEMON_RECORD"] + "." + str(os.getpid()), "w") as f:
        json.dump(record, f)
    while True:
        conn, _ = listener.accept()
        try:
            conn.settimeout(0.2)
            try:
                first = conn.recv(4096)
            except TimeoutError:
                first = b""
            if first[8:9] == bytes([1]):  # a ttrpc Request: the claim of another `start` of the group
                conn.sendall(bytes([0, 0, 0, 0, 0, 0, 0, 1, 2, 0]))  # its Response (stream 1): status OK
            else:
                conn.sendall(b"hello from the daemon")
        except OSError:
            pass
        conn.close()
""")


@pytest.fixture
def sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A socket directory short enough for sun_path (pytest's tmp_path is not). Not created yet."""
    top = Path(tempfile.mkdtemp(prefix="wv-", dir="/tmp"))
    directory = top / "s"
    monkeypatch.setenv(start.SOCKET_DIR_ENV, str(directory))
    yield directory
    shutil.rmtree(top)


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bundle"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


class FakeDaemons:
    """Runs `start` with the fake daemon as launcher and remembers every daemon it started."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.pids: list[int] = []

    def start(self, stdin: io.BytesIO | None = None, stdout: io.StringIO | None = None) -> start.Started:
        started = start.run(ARGS, stdin=stdin or io.BytesIO(), stdout=stdout or io.StringIO(),
                            launcher=self.command)
        if started.daemon_pid is not None:
            self.pids.append(started.daemon_pid)
        return started


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemons]:
    """The fake daemon. Every daemon started through it is killed and reaped at the end."""
    script = tmp_path / "fake_daemon.py"
    script.write_text(FAKE_DAEMON)
    monkeypatch.setenv("FAKE_DAEMON_RECORD", str(tmp_path / "record"))
    monkeypatch.setenv("TTRPC_ADDRESS", "/run/containerd/containerd.sock.ttrpc")
    daemons = FakeDaemons([sys.executable, str(script)])
    yield daemons
    for pid in daemons.pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _record(tmp_path: Path, pid: int, timeout: float = 10.0) -> dict[str, object]:
    path = tmp_path / f"record.{pid}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            data: dict[str, object] = json.loads(path.read_text())
            return data
        time.sleep(0.01)
    raise AssertionError(f"fake daemon {pid} wrote no record")


def _greeting(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(path)
        return client.recv(100)


def test_group_is_the_pod_sandbox_id(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(
        {"annotations": {"io.kubernetes.cri.sandbox-id": "pod42", "other": "x"}}))
    assert start.group_of(str(tmp_path), "task1") == "pod42"


@pytest.mark.parametrize("content", [None, "", "{not json", "[]", '{"annotations": []}', '{"annotations": {}}'])
def test_group_is_the_task_id_without_a_usable_annotation(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    assert start.group_of(str(tmp_path), "task1") == "task1"


def test_socket_name_is_sha256_of_address_namespace_group() -> None:
    expected = hashlib.sha256(b"/run/containerd/containerd.sock/default/pod42").hexdigest()
    assert start.socket_path("/run/containerd/containerd.sock", "default", "pod42", "/run/containerd/s") == \
        f"/run/containerd/s/{expected}"


def test_socket_name_joins_like_go_filepath_join() -> None:
    assert start._go_join("/run/c.sock/", "default", "g") == "/run/c.sock/default/g"
    assert start._go_join("//run//c.sock", "ns", "g") == "/run/c.sock/ns/g"
    assert start._go_join("", "ns", "g") == "ns/g"


def test_socket_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(start.SOCKET_DIR_ENV, raising=False)
    assert start.socket_dir() == "/run/containerd/s"
    monkeypatch.setenv(start.SOCKET_DIR_ENV, "/tmp/x")
    assert start.socket_path("/a", "ns", "g").startswith("/tmp/x/")


def test_socket_paths_longer_than_106_bytes_are_refused() -> None:
    fits = "/" + "d" * (106 - 65 - 1)  # dir + "/" + 64 hex digits == 106 bytes
    assert len(start.socket_path("/a", "ns", "g", fits)) == 106
    with pytest.raises(InvalidArgument, match=r"is 107 bytes, longer than the 106 a unix socket allows"):
        start.socket_path("/a", "ns", "g", fits + "d")


def test_daemon_command_reexecs_the_shim_with_serve_flags() -> None:
    args = parse_args(["-namespace", "ns", "-address", "/a.sock", "-publish-binary", "/bin/containerd",
                       "-id", "t1", "-debug", "start"])
    command = start.daemon_command(args, bundle="/b/t1", group="pod", socket="/s/abc", launcher=["py", "shim"])
    assert command == ["py", "shim", "-namespace", "ns", "-address", "/a.sock",
                       "-publish-binary", "/bin/containerd", "-id", "t1", "-bundle", "/b/t1", "-group", "pod",
                       "-socket", "/s/abc", "-socket-fd", "3", "-debug", "serve"]
    assert parse_args(command[2:]).socket_fd == 3


def test_shim_command_for_a_console_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bin/containerd-shim-wasmvisor-v1", "start"])
    assert start.shim_command() == [sys.executable, str(tmp_path / "bin/containerd-shim-wasmvisor-v1")]


def test_shim_command_under_python_dash_m(monkeypatch: pytest.MonkeyPatch) -> None:
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="wasmvisor.supervisor.shim.main")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["/site/wasmvisor/supervisor/shim/main.py", "start"])
    assert start.shim_command() == [sys.executable, "-m", "wasmvisor.supervisor.shim.main"]


def test_shim_command_for_a_frozen_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert start.shim_command() == [sys.executable]


def test_start_launches_a_listening_daemon_and_prints_its_address(
    bundle: Path, sockets: Path, fake: FakeDaemons, tmp_path: Path,
) -> None:
    out = io.StringIO()
    started = fake.start(stdout=out)
    path = start.socket_path(ARGS.address, "default", "task1")
    assert out.getvalue() == f"unix://{path}" == started.address
    assert (bundle / "address").read_text() == f"unix://{path}"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(sockets.stat().st_mode) == 0o700
    assert started.daemon_pid is not None
    record = _record(tmp_path, started.daemon_pid)
    assert record["listening"] is True
    assert record["sid"] == started.daemon_pid
    assert record["cwd"] == str(bundle)
    assert record["stdio"] == ["/dev/null"] * 3
    assert record["ttrpc"] == "/run/containerd/containerd.sock.ttrpc"
    assert record["argv"] == ["-namespace", "default", "-address", ARGS.address, "-publish-binary",
                              ARGS.publish_binary, "-id", "task1", "-bundle", str(bundle), "-group", "task1",
                              "-socket", path, "-socket-fd", "3", "serve"]
    assert _greeting(path) == b"hello from the daemon"


def test_start_reads_the_runtime_options_on_stdin_and_keeps_only_its_address(
    bundle: Path, sockets: Path, fake: FakeDaemons,
) -> None:
    stdin = io.BytesIO(b"\n\x1fruntimeoptions.v1.Options\x12\x05\x12\x03/x")
    before = set(os.listdir(bundle))
    fake.start(stdin=stdin)
    assert stdin.read() == b""  # read to its end: containerd's write never waits
    assert set(os.listdir(bundle)) - before == {"address"}


def test_start_reuses_a_live_supervisor_of_the_same_group(
    bundle: Path, sockets: Path, fake: FakeDaemons,
) -> None:
    (bundle / "config.json").write_text(json.dumps({"annotations": {"io.kubernetes.cri.sandbox-id": "pod"}}))
    path = start.socket_path(ARGS.address, "default", "pod")
    sockets.mkdir()
    with FakeGroup(path) as group:
        out = io.StringIO()
        started = fake.start(stdout=out)
        assert started.daemon_pid is None
        assert out.getvalue() == f"unix://{path}"
        assert (bundle / "address").read_text() == f"unix://{path}"
    assert group.task_ids == ["task1"]


def test_a_supervisor_that_refuses_the_claim_is_replaced_on_the_same_address(
    bundle: Path, sockets: Path, fake: FakeDaemons, tmp_path: Path,
) -> None:
    path = start.socket_path(ARGS.address, "default", "task1")
    sockets.mkdir()
    with FakeGroup(path, Code.FAILED_PRECONDITION) as ending:  # in its linger's last moment
        started = fake.start()
        assert started.daemon_pid is not None
        assert started.address == f"unix://{path}"
        _record(tmp_path, started.daemon_pid)
        assert _greeting(path) == b"hello from the daemon"
    assert ending.task_ids == ["task1", "task1"]  # asked on the fast path, then under the lock


def test_a_server_that_does_not_know_claims_is_reused_as_before(bundle: Path, sockets: Path, fake: FakeDaemons) -> None:
    """A supervisor of an older wasmvisor (no Group service) still serves its group after an upgrade."""
    path = start.socket_path(ARGS.address, "default", "task1")
    sockets.mkdir()
    with FakeGroup(path, Code.UNIMPLEMENTED) as older:
        started = fake.start()
    assert (started.daemon_pid, started.address, older.task_ids) == (None, f"unix://{path}", ["task1"])


def test_stale_socket_of_a_dead_supervisor_is_replaced(
    bundle: Path, sockets: Path, fake: FakeDaemons, tmp_path: Path,
) -> None:
    path = start.socket_path(ARGS.address, "default", "task1")
    sockets.mkdir()
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays; nobody listens
    started = fake.start()
    assert started.daemon_pid is not None
    _record(tmp_path, started.daemon_pid)
    assert _greeting(path) == b"hello from the daemon"


def test_concurrent_starts_of_one_group_share_one_daemon(
    bundle: Path, sockets: Path, fake: FakeDaemons,
) -> None:
    results: list[start.Started] = []

    def one() -> None:
        results.append(fake.start())

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert len({r.address for r in results}) == 1
    assert len([r for r in results if r.daemon_pid is not None]) == 1


def test_unusable_spawn_command_fails_and_removes_the_socket(bundle: Path, sockets: Path) -> None:
    with pytest.raises(Exception, match="cannot run the shim daemon /nonexistent/python"):
        start.run(ARGS, stdin=io.BytesIO(b""), stdout=io.StringIO(), launcher=["/nonexistent/python"])
    assert list(sockets.iterdir()) == []
    assert not (bundle / "address").exists()


def _shim(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wasmvisor.supervisor.shim.main", *argv], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)


def test_shim_binary_start_prints_only_the_address(bundle: Path, sockets: Path) -> None:
    path = start.socket_path(ARGS.address, "default", "task1")
    sockets.mkdir()
    with FakeGroup(path):  # a live supervisor: nothing is spawned
        result = _shim("-namespace", "default", "-address", ARGS.address, "-publish-binary", "/c",
                       "-id", "task1", "start", cwd=bundle, env=dict(os.environ))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"unix://{path}".encode(), b"")


def test_shim_binary_start_failure_is_one_line_on_stderr(bundle: Path, tmp_path: Path) -> None:
    env = dict(os.environ, **{start.SOCKET_DIR_ENV: str(tmp_path / ("long" * 20))})
    result = _shim("-namespace", "default", "-address", ARGS.address, "-id", "task1", "start",
                   cwd=bundle, env=env)
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wasmvisor start: socket path ")


def test_shim_binary_version(bundle: Path) -> None:
    version = _shim("-v", cwd=bundle, env=dict(os.environ))
    assert version.returncode == 0 and version.stdout.startswith(b"containerd-shim-wasmvisor-v1:\n  Version: ")


def test_shim_binary_usage_error_exits_2(bundle: Path) -> None:
    result = _shim("-namespace", "ns", cwd=bundle, env=dict(os.environ))
    assert (result.returncode, result.stderr) == (2, b"wasmvisor: no action given (expected one of: start, delete)\n")
