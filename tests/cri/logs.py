"""The CRI container log format that containerd writes and `kubectl logs` reads.

Each line is `<RFC 3339 nano time> <stdout|stderr> <tag> <content>\n`. The tag is `F` for a full line
and `P` for a partial one: CRI splits an output line longer than `max_container_log_line_size` (16384
bytes by default) into `P` lines followed by one `F` line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class CriLogError(ValueError):
    """A CRI log line that does not have the four fields; the message quotes it."""


@dataclass(frozen=True)
class LogLine:
    time: str
    stream: str
    partial: bool
    content: bytes

    @classmethod
    def parse(cls, raw: bytes) -> LogLine:
        parts = raw.rstrip(b"\n").split(b" ", 3)
        if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"P", b"F"):
            raise CriLogError(f"not a CRI log line: {raw[:120]!r}")
        content = parts[3] if len(parts) == 4 else b""
        return cls(parts[0].decode(), parts[1].decode(), parts[2] == b"P", content)


def parse_log(data: bytes) -> list[LogLine]:
    """Every line of a CRI log file's content (a last line without its newline is still being written
    and is left out)."""
    lines = data.split(b"\n")
    return [LogLine.parse(raw) for raw in lines[:-1] if raw]


def read_log(path: str | os.PathLike[str]) -> list[LogLine]:
    try:
        return parse_log(Path(path).read_bytes())
    except FileNotFoundError:
        return []


def messages(lines: list[LogLine], stream: str | None = None) -> list[bytes]:
    """The output lines as the program wrote them: `P` pieces joined with the `F` line that ends them,
    per stream (`stream` picks one)."""
    pending: dict[str, bytes] = {}
    out: list[bytes] = []
    for line in lines:
        if stream is not None and line.stream != stream:
            continue
        text = pending.pop(line.stream, b"") + line.content
        if line.partial:
            pending[line.stream] = text
        else:
            out.append(text)
    return out
