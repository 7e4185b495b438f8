"""The termination message: where the spec's /dev/termination-log comes from, what reason a
container's end gets, and that the shim writes it only into an empty file."""

from __future__ import annotations

import os
from pathlib import Path

from wasmvisor.supervisor.tasks.termination import exit_reason, log_path, write_reason


def spec_with(source: str, **mount: object) -> dict[str, object]:
    entry = {"destination": "/dev/termination-log", "type": "bind", "source": source, "options": ["rbind", "rw"]}
    entry.update(mount)
    return {"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}, entry]}


def test_the_log_is_the_source_of_the_bind_mount_at_dev_termination_log() -> None:
    assert log_path(spec_with("/var/lib/kubelet/pods/p/containers/c/abc")) == "/var/lib/kubelet/pods/p/containers/c/abc"
    assert log_path(spec_with("/host/file", type="none")) == "/host/file"  # bind by its options (containerd)


def test_no_log_without_such_a_bind_mount() -> None:
    assert log_path({}) is None
    assert log_path(None) is None
    assert log_path(spec_with("/f", destination="/dev/other-log")) is None
    assert log_path(spec_with("/f", type="tmpfs", options=["rw"])) is None
    assert log_path(spec_with("relative/file")) is None


def test_the_reason_names_an_oom_kill_with_the_limit() -> None:
    reason = exit_reason(137, "", oom=True, memory_limit=64 << 20)

    assert reason.startswith("OOMKilled: the container reached its memory limit of 67108864 bytes")


def test_the_reason_of_a_failed_guest_is_what_its_worker_said_and_a_plain_exit_has_none() -> None:
    assert exit_reason(137, "guest /trap.wasm trapped: wasm trap: unreachable", False, None) == \
        "guest /trap.wasm trapped: wasm trap: unreachable"
    assert exit_reason(3, "", False, None) == ""
    assert exit_reason(0, "a warning", False, None) == ""


def test_the_reason_goes_as_one_line_into_an_empty_log(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.write_bytes(b"")

    assert write_reason(spec_with(str(log)), "guest trapped:\nwasm trap: unreachable", "t")
    assert log.read_text() == "guest trapped: wasm trap: unreachable\n"


def test_what_the_container_wrote_itself_stays(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.write_text("my own last words\n")

    assert not write_reason(spec_with(str(log)), "OOMKilled: ...", "t")
    assert log.read_text() == "my own last words\n"


def test_a_symlink_or_a_missing_file_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    link = tmp_path / "termination-log"
    os.symlink(target, link)

    assert not write_reason(spec_with(str(link)), "reason", "t")
    assert not write_reason(spec_with(str(tmp_path / "missing")), "reason", "t")
    assert target.read_bytes() == b""
