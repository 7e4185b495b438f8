"""The worker's pure-ish pieces: runtime context, stdio opening, failures, log lines.

The worker's life as a process is tested through the zygote in tests/unit/ipc/test_zygote.py.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

import pytest

from wasmvisor import logs
from wasmvisor.engines.base import GuestError
from wasmvisor.errors import InvalidArgument, NotFound, Unimplemented
from wasmvisor.ipc.messages import Configure
from wasmvisor.spec import Spec
from wasmvisor.worker import stdio as stdio_module
from wasmvisor.worker.main import (
    failure_of,
    load_engine,
    open_stdio,
    runtime_context,
)


def spec(args: tuple[str, ...], cwd: str = "/", **raw: object) -> Spec:
    return Spec(args=args, env=("A=1",), cwd=cwd, terminal=False, annotations={}, root_path="/bundle/rootfs",
                raw=raw)


def configure(**fields: object) -> Configure:
    base: dict[str, object] = dict(namespace="ns", id="id", bundle="/bundle", rootfs="/run/rootfs")
    base.update(fields)
    return Configure(**base)  # type: ignore[arg-type]


def test_runtime_context_resolves_the_entrypoint_in_the_rootfs(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    ctx = runtime_context(configure(rootfs=str(tmp_path)),
                          spec(("bin.wasm#main", "x"), cwd="/app",
                               linux={"resources": {"memory": {"limit": 1 << 20}}}))
    assert ctx.entrypoint.source == "bin.wasm"
    assert ctx.entrypoint.func == "main"
    assert ctx.entrypoint.host_path == str(tmp_path / "app" / "bin.wasm")
    assert ctx.entrypoint.name == "bin"
    assert (tuple(ctx.args), tuple(ctx.envs), ctx.cwd, ctx.root) == (("bin.wasm#main", "x"), ("A=1",), "/app",
                                                                      str(tmp_path))
    assert ctx.memory_limit == 1 << 20


def test_runtime_context_without_rootfs_uses_the_spec_root() -> None:
    assert runtime_context(configure(rootfs=""), spec(("/a.wasm",))).root == "/bundle/rootfs"


def test_load_engine_needs_module_colon_class() -> None:
    assert load_engine("wasmvisor.engines.wasmtime_engine:WasmtimeEngine").name == "wasmtime"
    with pytest.raises(Exception, match="want module:Class"):
        load_engine("wasmvisor.engines.wasmtime_engine")
    with pytest.raises(Exception, match="not an Engine"):
        load_engine("wasmvisor.ipc.messages:Ready")


def test_failures_keep_their_status_code() -> None:
    assert failure_of(InvalidArgument("x")) == ("INVALID_ARGUMENT", "x")
    assert failure_of(NotFound("y")) == ("NOT_FOUND", "y")
    assert failure_of(GuestError("module /a.wasm: bad")) == ("INVALID_ARGUMENT", "module /a.wasm: bad")
    code, message = failure_of(RuntimeError("boom"))
    assert code == "INTERNAL" and message.startswith("RuntimeError: boom")


def close_all(*fds: int) -> None:
    for fd in set(fds):
        os.close(fd)


def test_empty_stdio_is_dev_null() -> None:
    stdio = open_stdio(configure())
    try:
        assert all(os.path.samestat(os.fstat(fd), os.stat(os.devnull)) for fd in stdio.__dict__.values())
    finally:
        close_all(stdio.stdin, stdio.stdout, stdio.stderr)


def test_fifos_open_without_a_reader_in_the_end_and_files_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(stdio_module, "READER_WAIT_SECONDS", 0.05)
    out, err, inp = tmp_path / "out", tmp_path / "err", tmp_path / "in"
    os.mkfifo(out)
    os.mkfifo(inp)
    err.write_text("old\n")
    with caplog.at_level(logging.WARNING, logger=stdio_module.__name__):
        stdio = open_stdio(configure(stdin=str(inp), stdout=str(out), stderr=str(err)))
    try:
        os.write(stdio.stdout, b"to the fifo\n")  # no reader but ourselves: does not block
        os.write(stdio.stderr, b"new\n")
        assert os.get_blocking(stdio.stdin)
        assert err.read_text() == "old\nnew\n"
        assert [r.getMessage() for r in caplog.records] == [
            f"stdout {out}: no reader after 0 s; what the process writes before one opens it is lost"]
    finally:
        close_all(stdio.stdin, stdio.stdout, stdio.stderr)


def test_an_output_fifo_waits_for_a_late_reader_which_then_gets_everything(tmp_path: Path) -> None:
    # ctr and containerd's CRI open the reader before Create, in a goroutine of their own: on a loaded
    # node that open may come after a short guest has written and ended. Opened without waiting, the
    # FIFO's data went away with the guest's last fd, and `ctr run` printed nothing with exit 0.
    out = tmp_path / "out"
    os.mkfifo(out)
    opened: list[int] = []

    def late_reader() -> None:
        time.sleep(0.3)
        opened.append(os.open(out, os.O_RDONLY | os.O_NONBLOCK))

    reader = threading.Thread(target=late_reader)
    reader.start()
    began = time.monotonic()
    stdio = open_stdio(configure(stdout=str(out)))
    waited = time.monotonic() - began
    os.write(stdio.stdout, b"early\n")
    close_all(stdio.stdin, stdio.stdout, stdio.stderr)  # the guest has ended
    reader.join(5)
    try:
        assert opened and waited >= 0.2
        assert os.read(opened[0], 100) == b"early\n"
        assert os.read(opened[0], 100) == b""  # then EOF: no writer is left
    finally:
        close_all(*opened)


def test_file_uri_is_created_and_shared_by_stdout_and_stderr(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "out.log"
    stdio = open_stdio(configure(stdout=f"file://{path}", stderr=f"file://{path}"))
    try:
        os.write(stdio.stdout, b"1\n")
        os.write(stdio.stderr, b"2\n")
        os.write(stdio.stdout, b"3\n")
        assert path.read_text() == "1\n2\n3\n"
    finally:
        close_all(stdio.stdin, stdio.stdout, stdio.stderr)


def test_terminal_sends_stderr_to_stdout(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.touch()
    stdio = open_stdio(configure(stdout=str(out), terminal=True))
    try:
        os.write(stdio.stderr, b"err\n")
        assert out.read_text() == "err\n"
    finally:
        close_all(stdio.stdin, stdio.stdout, stdio.stderr)


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"stdout": "/nonexistent/out"}, NotFound, "stdout /nonexistent/out: no such file or FIFO"),
        ({"stdin": "/nonexistent/in"}, NotFound, "stdin /nonexistent/in: no such file or FIFO"),
        ({"stdout": "binary:///usr/bin/logger"}, Unimplemented, "STDIO scheme 'binary' is not supported"),
        ({"stdout": "/"}, InvalidArgument, "stdout /: not a FIFO or a file"),
    ],
)
def test_bad_stdio_names_the_stream(fields: dict[str, str], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        open_stdio(configure(**fields))


def test_the_worker_logs_logrus_lines_with_its_task_fields(tmp_path: Path) -> None:
    """The worker writes its lines with the supervisor's formatter (wasmvisor.logs): same quoting, same time."""
    r, w = os.pipe()
    try:
        formatter = logs.LogrusFormatter({"instance": "t1", "namespace": "default"})
        handler = logs.FdHandler(w)
        handler.setFormatter(formatter)
        handler.emit(logging.LogRecord("x", logging.WARNING, __file__, 1, 'say "hi"\nbye', None, None))
        line = os.read(r, 4096).decode()
    finally:
        os.close(r)
        os.close(w)
    assert re.fullmatch(r'time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z" level=warning '
                        r'msg="say \\"hi\\"\\nbye" instance=t1 namespace=default\n', line)


def test_an_exit_waits_until_the_output_fifo_is_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    os.mkfifo(out)
    reader = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(out, os.O_WRONLY)
    try:
        os.write(writer, b"last words\n")  # the guest has ended with this unread
        got: list[bytes] = []
        late = threading.Timer(0.3, lambda: got.append(os.read(reader, 100)))
        late.start()
        began = time.monotonic()
        stdio_module.wait_drained((writer,), limit=5.0)
        waited = time.monotonic() - began
        late.join()
        assert got == [b"last words\n"]
        assert 0.25 <= waited < 4.0
    finally:
        close_all(reader, writer)


def test_an_exit_waits_no_longer_than_its_limit_for_a_reader_that_does_not_read(tmp_path: Path) -> None:
    out, plain = tmp_path / "out", tmp_path / "plain"
    os.mkfifo(out)
    reader = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(out, os.O_WRONLY)
    file_fd = os.open(plain, os.O_WRONLY | os.O_CREAT)
    try:
        os.write(writer, b"never read\n")
        began = time.monotonic()
        stdio_module.wait_drained((file_fd, writer), limit=0.2)  # a file is never waited for
        assert 0.15 <= time.monotonic() - began < 2.0
        began = time.monotonic()
        stdio_module.wait_drained((file_fd,), limit=5.0)
        assert time.monotonic() - began < 1.0
    finally:
        close_all(reader, writer, file_fd)
