"""The `start` fast path: with the group's supervisor already listening, `start` answers after loading
almost nothing (no protobuf, asyncio, logging, socket, hashlib, json, typing, dataclasses).

Each case runs the shim's `main` in a fresh interpreter (as containerd runs the binary) next to a
socket whose server grants claims (the live supervisor), and looks at the modules that interpreter loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.supervisor.shim.fake_group import FakeGroup
from wasmvisor.supervisor.shim import bootstrap, start

REPO = Path(__file__).resolve().parents[4]
HEAVY = ("google.protobuf", "asyncio", "grpc", "wasmtime", "logging", "multiprocess", "multiprocessing", "orjson",
         "setproctitle", "wasmvisor.supervisor.shim.bootstrap", "wasmvisor.errors")
NEVER_ON_THE_FAST_PATH = (*HEAVY, "subprocess", "dataclasses", "typing", "socket", "hashlib", "fcntl", "enum")
"""Without `site` (the generated entry script), none of these; with it, `site` and its .pth files may load
some standard modules themselves, so only HEAVY is checked."""

RUN_MAIN = textwrap.dedent("""
    import sys
    sys.path.append(sys.argv.pop(1))
    from wasmvisor.supervisor.shim.main import main
    try:
        main()
    except SystemExit as exc:
        status = exc.code
    sys.stderr.write("\\nMODULES " + " ".join(sorted(sys.modules)) + "\\n")
    sys.exit(status)
""")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(bundle, socket dir): a short socket directory and a bundle with an empty config.json."""
    top = Path(tempfile.mkdtemp(prefix="wv-", dir="/tmp"))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text("{}")
    yield bundle, top
    shutil.rmtree(top)


def listen(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    return server


def run_start(bundle: Path, sockets: Path, *flags: str, env: dict[str, str] | None = None,
              task_id: str = "task1") -> tuple[str, set[str]]:
    environment = {k: v for k, v in os.environ.items() if k not in ("WASMVISOR_PROTOCOL", "GRPC_ADDRESS", "NAMESPACE")}
    environment[start.SOCKET_DIR_ENV] = str(sockets)
    environment.update(env or {})
    argv = [sys.executable, *flags, "-c", RUN_MAIN, str(REPO),
            "-namespace", "ns", "-address", "/run/c.sock", "-id", task_id, "start"]
    done = subprocess.run(argv, cwd=bundle, env=environment, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 0, done.stderr
    errors, _, modules = done.stderr.rpartition("MODULES ")
    assert errors.strip() == ""
    return done.stdout, set(modules.split())


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize("flags", [(), ("-I", "-S")], ids=["plain-python", "isolated-no-site"])
def test_start_with_a_live_supervisor_loads_no_heavy_module(live: tuple[Path, Path], flags: tuple[str, ...]) -> None:
    bundle, sockets = live
    path = start.socket_path("/run/c.sock", "ns", "task1", str(sockets))
    with FakeGroup(path) as group:
        out, modules = run_start(bundle, sockets, *flags)
    assert out == "unix://" + path
    assert group.task_ids == ["task1"]
    assert (bundle / start.ADDRESS_FILE).read_text() == out
    assert loaded(modules, NEVER_ON_THE_FAST_PATH if "-S" in flags else HEAVY) == []


def test_pod_annotation_is_read_without_json_or_re(live: tuple[Path, Path]) -> None:
    bundle, sockets = live
    (bundle / "config.json").write_text(json.dumps({"annotations": {start.GROUP_ANNOTATION: "pod-7"}}))
    path = start.socket_path("/run/c.sock", "ns", "pod-7", str(sockets))
    with FakeGroup(path):
        out, modules = run_start(bundle, sockets, "-I", "-S", task_id="task2")
    assert out == "unix://" + path
    assert loaded(modules, ("json", "re", *NEVER_ON_THE_FAST_PATH)) == []


def test_a_requested_protocol_takes_the_full_path_and_still_reuses_the_supervisor(live: tuple[Path, Path]) -> None:
    bundle, sockets = live
    path = start.socket_path("/run/c.sock", "ns", "task1", str(sockets))
    with FakeGroup(path):
        # containerd 1.6 (none of its 1.7+ variables set): the plain address, chosen by bootstrap.
        out, modules = run_start(bundle, sockets, env={"WASMVISOR_PROTOCOL": "ttrpc-v3"})
    assert out == "unix://" + path
    assert "wasmvisor.supervisor.shim.bootstrap" in modules


def test_no_live_supervisor_is_not_taken_for_one(live: tuple[Path, Path]) -> None:
    bundle, sockets = live
    path = start.socket_path("/run/c.sock", "ns", "task1", str(sockets))
    sockets.mkdir(exist_ok=True)
    dead = listen(path)
    dead.close()  # the file stays, nobody listens: a stale socket
    assert not start.is_serving(path)


def test_fast_path_constants_match_bootstrap() -> None:
    assert start.PROTOCOL_ENV == bootstrap.PROTOCOL_ENV
    assert start.PLAIN_SCHEME + "/run/x" == bootstrap.PLAIN.answer("/run/x")


def test_group_of_ignores_the_annotation_name_as_a_value_only_when_it_parses(tmp_path: Path) -> None:
    # The name present but not as an annotation key: json decides, the task keeps its own group.
    (tmp_path / "config.json").write_text(json.dumps({"process": {"env": [start.GROUP_ANNOTATION]}}))
    assert start.group_of(str(tmp_path), "t1") == "t1"
    (tmp_path / "config.json").write_text('{"annotations": {"' + start.GROUP_ANNOTATION + '": "p"}')  # truncated
    assert start.group_of(str(tmp_path), "t1") == "t1"


def test_start_of_a_new_group_asks_the_template_and_loads_no_heavy_module(live: tuple[Path, Path]) -> None:
    """The slow path with a live template: still no json, dataclasses, enum, hashlib, socket or typing
    (the bootstrap and errors modules load only when a protocol is requested or something fails)."""
    import threading

    import wasmvisor
    from wasmvisor.supervisor.shim import template_client
    from wasmvisor.supervisor.shim import template_server as template

    bundle, sockets = live
    sockets.mkdir(exist_ok=True)
    command = [sys.executable, os.path.join(str(bundle), "-c")]  # shim_command() under `python -c`
    stamp = template_client.code_stamp(os.path.dirname(wasmvisor.__file__))
    server = listen(template_client.template_path(str(sockets), "/run/c.sock", command, stamp))
    seen: list[template.Request] = []

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            data, fds, _, _ = socket.recv_fds(conn, 65536, 1)
            while (payload := template.request_payload(data)) is None:
                data += conn.recv(65536)
            seen.append(template.parse_request(payload))
            for fd in fds:
                os.close(fd)
            conn.sendall(b"pid %d\n" % os.getpid())

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    with server:
        out, modules = run_start(bundle, sockets, "-I", "-S")
    thread.join(10)
    path = start.socket_path("/run/c.sock", "ns", "task1", str(sockets))
    assert out == "unix://" + path
    [request] = seen
    assert request.argv[-1] == "serve" and request.cwd == str(bundle)
    assert "-socket-fd" in request.argv and request.env[start.SOCKET_DIR_ENV] == str(sockets)
    # fcntl (a small extension module) takes the socket directory's lock, which launching needs.
    assert loaded(modules, ("json", *(n for n in NEVER_ON_THE_FAST_PATH if n != "fcntl"))) == []
