"""What a wasm worker says once its log FIFO is closed: its warnings, and the termination message."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from wasmvisor.worker.last_words import LastWords, write_termination_message


def test_last_words_keep_warnings_and_errors_one_line_each() -> None:
    words = LastWords()
    log = logging.getLogger("test.last_words")
    log.addHandler(words)
    try:
        log.warning("guest %s trapped:\nunreachable", "/app.wasm")
        log.info("not kept")
        log.error("and this")
    finally:
        log.removeHandler(words)
    assert words.text() == "guest /app.wasm trapped: unreachable; and this"


def test_the_termination_message_is_written_to_an_empty_log_only(tmp_path: Path) -> None:
    empty, written = tmp_path / "empty", tmp_path / "written"
    empty.write_text("")
    written.write_text("the guest's own words\n")
    assert write_termination_message("time limit passed", str(empty))
    assert empty.read_text() == "time limit passed\n"
    assert not write_termination_message("time limit passed", str(written))
    assert written.read_text() == "the guest's own words\n"


def test_no_termination_log_or_not_a_file_is_no_error(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so that opening it for writing does not block
    try:
        assert not write_termination_message("x", str(tmp_path / "missing"))
        assert not write_termination_message("x", str(fifo))
        assert not write_termination_message("x", str(tmp_path))
    finally:
        os.close(reader)
