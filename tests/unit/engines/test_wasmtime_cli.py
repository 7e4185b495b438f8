"""The wasmtime CLI engine's pure parts: the HTTP address from the annotation, the command lines, and
finding the CLI."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from wasmvisor.engines.base import Entrypoint, GuestError, RuntimeContext, Stdio
from wasmvisor.engines.component_world import Route, World
from wasmvisor.engines.wasmtime_cli import (
    CLI_ENV,
    HTTP_PORT_ANNOTATION,
    CliGuest,
    cli_argv,
    find_cli,
    http_address,
)

HTTP = World(("wasi:cli/environment@0.2.0",), ("wasi:http/incoming-handler@0.2.0",))
P3 = World(("wasi:cli/exit@0.3.0",), ("wasi:cli/run@0.3.0",))


def ctx(func: str = "_start", annotations: dict[str, str] | None = None) -> RuntimeContext:
    return RuntimeContext(args=("/app.wasm", "a b"), envs=("K=v",), cwd="/srv",
                          entrypoint=Entrypoint("app", "/app.wasm", "/rootfs/app.wasm", func), root="/rootfs",
                          annotations=annotations or {})


@pytest.mark.parametrize(("value", "address"), [
    (None, "0.0.0.0:8080"), ("9090", "0.0.0.0:9090"), ("127.0.0.1:81", "127.0.0.1:81"), (" 8000 ", "0.0.0.0:8000"),
])
def test_http_address_is_8080_or_the_annotation(value: str | None, address: str) -> None:
    assert http_address({HTTP_PORT_ANNOTATION: value} if value is not None else {}) == address


@pytest.mark.parametrize("value", ["http", "0", "70000", "host:"])
def test_a_bad_port_annotation_is_named(value: str) -> None:
    with pytest.raises(GuestError, match=f"annotation {HTTP_PORT_ANNOTATION}="):
        http_address({HTTP_PORT_ANNOTATION: value})


def test_http_is_served_with_the_root_and_env() -> None:
    assert cli_argv("/bin/wasmtime", Route.HTTP, HTTP, ctx(), "/cache/x.cwasm") == [
        "/bin/wasmtime", "serve", "--addr", "0.0.0.0:8080", "-Scli=y", "--dir", "/rootfs::/", "--env=K=v",
        "--env=PWD=/srv", "--allow-precompiled", "/cache/x.cwasm"]


def test_a_p3_command_runs_with_async_and_p3_and_its_args() -> None:
    assert cli_argv("wasmtime", Route.COMMAND_P3, P3, ctx(func="greet"), "/tmp/app.wasm") == [
        "wasmtime", "run", "--argv0", "/app.wasm", "-Wcomponent-model-async=y", "-Sp3=y", "--dir", "/rootfs::/",
        "--env=K=v", "--env=PWD=/srv", "--invoke", "greet()", "/tmp/app.wasm", "a b"]


def test_the_memory_limit_of_the_spec_limits_each_memory() -> None:
    argv = cli_argv("wasmtime", Route.HTTP, HTTP, replace(ctx(), memory_limit=64 << 20), "x.cwasm")
    assert "-Wmax-memory-size=67108864" in argv


def test_the_cli_named_by_the_setting_must_be_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLI_ENV, str(tmp_path / "nope"))
    with pytest.raises(GuestError, match=f"component /app.wasm: {CLI_ENV}=.* is not an executable file"):
        find_cli("/app.wasm", Route.HTTP)
    cli = tmp_path / "wasmtime"
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    monkeypatch.setenv(CLI_ENV, str(cli))
    assert find_cli("/app.wasm", Route.HTTP) == str(cli)


FAKE_CLI = """#!/bin/sh
# Stands in for `wasmtime serve`: says it started, and on SIGINT (its graceful stop) says so and ends 0.
trap 'echo drained; exit 0' INT
echo started
while :; do sleep 0.02; done
"""


def test_stop_passes_sigterm_on_as_the_clis_graceful_stop(tmp_path: Path) -> None:
    cli = tmp_path / "wasmtime"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    guest = CliGuest(str(cli), Route.HTTP, HTTP, ctx(), str(tmp_path / "app.cwasm"))
    read, write = os.pipe()

    def run() -> None:  # as under PID 1: the signals stay blocked, another thread calls stop
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        guest(Stdio(stdout=write))

    threading.Thread(target=run, daemon=True).start()
    with os.fdopen(read) as out:
        assert out.readline() == "started\n"
        guest.stop(signal.SIGTERM)
        os.close(write)
        assert out.readline() == "drained\n"
    assert guest._child is not None and guest._child.returncode == 0


def test_stop_before_start_starts_nothing(tmp_path: Path) -> None:
    guest = CliGuest("/nonexistent/wasmtime", Route.HTTP, HTTP, ctx(), "x.cwasm")
    guest.stop(signal.SIGTERM)
    assert guest._child is None
