"""The supervisor template's request format and the naming of its socket (no processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasmvisor.supervisor import template, template_client


def test_a_request_round_trips() -> None:
    line = template_client.encode_request(["-namespace", "ns", "-id", "a", "serve"], {"PATH": "/bin"}, "/b")
    request = template.parse_request(line)
    assert (request.argv, request.env, request.cwd) == (["-namespace", "ns", "-id", "a", "serve"],
                                                        {"PATH": "/bin"}, "/b")


@pytest.mark.parametrize(("line", "complaint"), [
    (b"{", "not JSON"),
    (b'{"version": 2, "argv": ["serve"], "env": {}, "cwd": "/"}', "version 1"),
    (b'{"version": 1, "argv": [], "env": {}, "cwd": "/"}', "argv"),
    (b'{"version": 1, "argv": ["-id", "x", "start"], "env": {}, "cwd": "/"}', "not the serve action"),
    (b'{"version": 1, "argv": ["serve"], "env": {"A": 1}, "cwd": "/"}', "env"),
    (b'{"version": 1, "argv": ["serve"], "env": {}, "cwd": "relative"}', "cwd"),
])
def test_a_bad_request_is_refused_naming_the_field(line: bytes, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        template.parse_request(line)


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
