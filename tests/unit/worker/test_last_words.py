"""What a wasm worker says once its log FIFO is closed: its warnings, for Exited.note."""

from __future__ import annotations

import logging

from wasmvisor.worker.last_words import LastWords


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
