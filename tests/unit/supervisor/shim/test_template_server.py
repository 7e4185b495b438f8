"""The supervisor template's request format (template_protocol.py) and the naming of its socket (no processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasmvisor.supervisor.shim import template_client, template_protocol
from wasmvisor.supervisor.shim import template_server as template


def payload(line: bytes) -> bytes:
    head, _, rest = line.partition(b"\n")
    assert int(head) == len(rest)
    return rest


def test_a_request_round_trips() -> None:
    env = {"PATH": "/bin", "ODD": "a=b c\nd", "EMPTY": ""}
    line = template_protocol.encode_request(["-namespace", "ns", "-id", "", "serve"], env, "/b ü")
    request = template.parse_request(payload(line))
    assert (request.argv, request.env, request.cwd) == (["-namespace", "ns", "-id", "", "serve"], env, "/b ü")


@pytest.mark.parametrize(("fields", "complaint"), [
    ([b"other/1", b"/", b"1", b"serve"], "does not start with"),
    ([template_protocol.MAGIC.encode(), b"/", b"x", b"serve"], "argument count"),
    ([template_protocol.MAGIC.encode(), b"/", b"0"], "argument count"),
    ([template_protocol.MAGIC.encode(), b"/", b"5", b"serve"], "argument count"),
    ([template_protocol.MAGIC.encode(), b"/", b"2", b"-id", b"start"], "not the serve action"),
    ([template_protocol.MAGIC.encode(), b"/", b"1", b"serve", b"NOEQUALS"], "KEY=VALUE"),
    ([template_protocol.MAGIC.encode(), b"relative", b"1", b"serve"], "absolute"),
])
def test_a_bad_request_is_refused_naming_the_field(fields: list[bytes], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        template.parse_request(b"\0".join(fields))


def test_the_socket_name_depends_on_address_command_and_code(tmp_path: Path) -> None:
    base = template_client.template_path("/run/s", "/c.sock", ["/py", "/shim"], "1.2")
    assert base.startswith("/run/s/wasmvisor-template-") and len(os.path.basename(base)) == 19 + 32
    assert base == template_client.template_path("/run/s", "/c.sock", ["/py", "/shim"], "1.2")
    assert base != template_client.template_path("/run/s", "/other.sock", ["/py", "/shim"], "1.2")
    assert base != template_client.template_path("/run/s", "/c.sock", ["/py", "/custom-shim"], "1.2")
    assert base != template_client.template_path("/run/s", "/c.sock", ["/py", "/shim"], "1.3")


def test_the_code_stamp_changes_when_a_module_is_edited_or_added(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "a.py"
    module.write_text("x = 1\n")
    os.utime(module, ns=(1_000_000_000, 1_000_000_000))
    first = template_client.code_stamp(str(tmp_path))
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    assert template_client.code_stamp(str(tmp_path)) == first
    os.utime(module, ns=(2_000_000_000, 2_000_000_000))
    edited = template_client.code_stamp(str(tmp_path))
    assert edited != first
    (tmp_path / "b.py").write_text("")
    os.utime(tmp_path / "b.py", ns=(1_000_000_000, 1_000_000_000))
    assert template_client.code_stamp(str(tmp_path)) != edited


@pytest.mark.parametrize(("value", "on"), [("", True), ("1", True), ("0", False), ("off", False), ("no", False)])
def test_the_template_can_be_turned_off(value: str, on: bool) -> None:
    assert template_client.enabled({"WASMVISOR_TEMPLATE": value} if value else {}) is on


@pytest.mark.parametrize(("value", "seconds"), [("", 600.0), ("5", 5.0), ("-1", 600.0), ("x", 600.0)])
def test_idle_time_comes_from_the_environment(value: str, seconds: float) -> None:
    assert template.idle_seconds({"WASMVISOR_TEMPLATE_IDLE_SECONDS": value}) == seconds


def test_a_request_is_whole_only_once_its_length_line_and_payload_have_arrived() -> None:
    line = template_protocol.encode_request(["serve"], {}, "/")
    for cut in (0, 1, line.index(b"\n"), len(line) - 1):
        assert template.request_payload(line[:cut]) is None
    assert template.request_payload(line) == payload(line)
    with pytest.raises(ValueError, match="ended early"):
        template.request_payload(line[:-1], ended=True)
    with pytest.raises(ValueError, match="before its length"):
        template.request_payload(b"12", ended=True)
    with pytest.raises(ValueError, match="does not start with its length"):
        template.request_payload(b"x" * 24)


def test_the_template_is_told_which_containerd_it_serves() -> None:
    from wasmvisor.supervisor.shim.cliargs import parse_args

    args = parse_args(["-address", "/c.sock", "-socket", "/s/t", "-socket-fd", "3", "-containerd-pid", "42",
                       "template"])
    assert args.containerd_pid == 42
    assert parse_args(["-socket", "/s/t", "template"]).containerd_pid == 0


def test_the_template_preloads_opentelemetry_only_when_traces_are_on() -> None:
    engine = "wasmvisor.engines.wasmtime_engine:WasmtimeEngine"
    traced = template.preload(engine, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    plain = template.preload(engine, environ={})

    assert set(template.TRACING_PRELOAD) <= set(traced)
    assert not any(m in plain for m in template.TRACING_PRELOAD) and set(plain) < set(traced)
