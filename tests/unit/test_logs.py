"""Log lines that containerd shows in its own log, in its own (logrus text) format."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmvisor import logs

LINE = re.compile(r'^time="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)" level=(\w+) msg=(.*)$')


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(("value", "expected"), [
    ("hello", "hello"),
    ("io.containerd/v1-x_y@2^3+4", "io.containerd/v1-x_y@2^3+4"),
    ("", ""),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("a=b", '"a=b"'),
    ("back\\slash", '"back\\\\slash"'),
    ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
    ("bell\x07esc\x1b", '"bell\\aesc\\x1b"'),
    ("caf\u00e9", '"caf\u00e9"'),
    ("zero\u200bwidth", '"zero\\u200bwidth"'),
])
def test_values_are_quoted_like_logrus(value: str, expected: str) -> None:
    assert logs.quote(value) == expected


def test_time_is_rfc3339_with_nine_digits_in_utc() -> None:
    assert logs.format_time(1795167302.25) == "2026-11-20T09:35:02.250000000Z"


def test_a_task_line_carries_instance_namespace_and_pod(restore_root_logger: None) -> None:
    out = io.StringIO()
    logs.configure(out, "info", namespace="default", pod="pod 1")
    log = logging.getLogger("wasmvisor.test")
    log.info("task %s started", "task1", extra={logs.FIELDS_ATTR: {"instance": "task1"}})
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    match = LINE.match(line.rstrip("\n"))
    assert match, line
    assert match.group(2) == "info"
    assert match.group(3) == '"task task1 started" instance=task1 namespace=default pod="pod 1"'


def test_single_word_message_is_bare_and_levels_use_logrus_names(restore_root_logger: None) -> None:
    out = io.StringIO()
    logs.configure(out, "debug")
    log = logging.getLogger("wasmvisor.test")
    log.debug("one")
    log.warning("two")
    log.error("three")
    log.critical("four")
    levels = [LINE.match(line).group(2) + " " + LINE.match(line).group(3)  # type: ignore[union-attr]
              for line in out.getvalue().splitlines()]
    assert levels == ["debug one", "warning two", "error three", "fatal four"]


def test_level_filters_lines(restore_root_logger: None) -> None:
    out = io.StringIO()
    logs.configure(out, "info")
    logging.getLogger("wasmvisor.test").debug("hidden")
    assert out.getvalue() == ""


def test_traceback_stays_on_one_line(restore_root_logger: None) -> None:
    out = io.StringIO()
    logs.configure(out, "info", pod="p")
    try:
        raise ValueError("bad thing")
    except ValueError:
        logging.getLogger("wasmvisor.test").exception("create failed")
    text = out.getvalue()
    assert text.count("\n") == 1
    assert 'msg="create failed\\nTraceback (most recent call last):\\n' in text
    assert "ValueError: bad thing" in text and text.rstrip().endswith("pod=p")


def test_per_call_fields_are_sorted_after_the_message(restore_root_logger: None) -> None:
    out = io.StringIO()
    logs.configure(out, "info")
    logging.getLogger("wasmvisor.test").info("exited", extra={logs.FIELDS_ATTR: {"instance": "t1", "exit_status": 137}})
    assert out.getvalue().rstrip().endswith('msg=exited exit_status=137 instance=t1')


def test_configure_on_a_raw_fd_writes_whole_lines(restore_root_logger: None) -> None:
    r, w = os.pipe()
    try:
        logs.configure(w, "info", namespace="ns")
        logging.getLogger("wasmvisor.test").info("via fd")
        data = os.read(r, 4096).decode()
    finally:
        os.close(r)
        os.close(w)
    assert data.endswith('msg="via fd" namespace=ns\n')


def test_configure_replaces_its_previous_handler(restore_root_logger: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.configure(first, "info")
    logs.configure(second, "info")
    logging.getLogger("wasmvisor.test").info("once")
    assert first.getvalue() == "" and "once" in second.getvalue()


@pytest.mark.parametrize(("name", "level"), [("trace", logging.DEBUG), ("debug", logging.DEBUG),
                                             ("info", logging.INFO), ("warn", logging.WARNING),
                                             ("WARNING", logging.WARNING), ("error", logging.ERROR)])
def test_containerd_level_names(name: str, level: int) -> None:
    assert logs.level_number(name) == level


def test_unknown_level_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.level_number("loud")


def test_log_fifo_absent_gives_none(tmp_path: Path) -> None:
    assert logs.open_log_fifo(str(tmp_path)) is None
    assert logs.open_log_fifo(str(tmp_path / "gone")) is None


def test_log_fifo_without_reader_gives_none_instead_of_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "log")
    started = time.monotonic()
    assert logs.open_log_fifo(str(tmp_path)) is None
    assert time.monotonic() - started < 1


def test_log_fifo_held_by_containerd_opens_in_blocking_mode(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "log", 0o700)
    reader = os.open(tmp_path / "log", os.O_RDWR | os.O_NONBLOCK)  # what containerd does
    try:
        fd = logs.open_log_fifo(str(tmp_path))
        assert fd is not None
        try:
            assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
            assert not os.get_inheritable(fd)
            os.write(fd, b"line\n")
            assert os.read(reader, 100) == b"line\n"
        finally:
            os.close(fd)
    finally:
        os.close(reader)
