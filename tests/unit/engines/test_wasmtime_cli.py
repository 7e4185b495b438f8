"""The wasmtime CLI engine's pure parts: the HTTP address from the annotation, the command lines, and
finding the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmvisor.engines.base import Entrypoint, GuestError, RuntimeContext
from wasmvisor.engines.component_world import Route, World
from wasmvisor.engines.wasmtime_cli import CLI_ENV, HTTP_PORT_ANNOTATION, cli_argv, find_cli, http_address

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


def test_the_cli_named_by_the_setting_must_be_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLI_ENV, str(tmp_path / "nope"))
    with pytest.raises(GuestError, match=f"component /app.wasm: {CLI_ENV}=.* is not an executable file"):
        find_cli("/app.wasm", Route.HTTP)
    cli = tmp_path / "wasmtime"
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    monkeypatch.setenv(CLI_ENV, str(cli))
    assert find_cli("/app.wasm", Route.HTTP) == str(cli)
