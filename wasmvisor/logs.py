"""Log lines in containerd's own format (logrus text), written to the bundle's `log` FIFO.

containerd copies whatever the shim daemon writes into `<bundle>/log` into its own log, so the lines
look like containerd's: `time="2026-11-23T09:35:02.123456789Z" level=info msg="task started"
instance=ID namespace=NS pod=GROUP`. Values are quoted as logrus does (Go `%q`) when they contain
anything but `[A-Za-z0-9-._/@^+]`, so a line never breaks, tracebacks included.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the supervisor imports this before the zygote starts
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TextIO

FIELDS_ATTR = "logfields"
"""LogRecord attribute holding per-record key=value fields (`extra={FIELDS_ATTR: {...}}`)."""

_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/@^+")
_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v",
}


def quote(value: str) -> str:
    """`value` as logrus writes it: bare if it is made of safe characters, else Go-quoted."""
    if all(c in _PLAIN for c in value):
        return value
    out = ['"']
    for c in value:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) <= 0xFFFF:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)


def format_time(created: float) -> str:
    """RFC 3339 with nine fractional digits in UTC, as containerd's RFC3339NanoFixed."""
    seconds = int(created)
    nanos = min(int(round((created - seconds) * 1e9)), 999_999_999)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{nanos:09d}Z"


class LogrusFormatter(logging.Formatter):
    """Formats a record as one logrus text line: time, level, msg, then sorted fields."""

    def __init__(self, fields: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            msg = f"{msg}\n{record.exc_text}"
        if record.stack_info:
            msg = f"{msg}\n{self.formatStack(record.stack_info)}"
        fields = dict(self.fields)
        fields.update(getattr(record, FIELDS_ATTR, None) or {})
        level = _LEVELS.get(record.levelno) or record.levelname.lower()
        parts = [f"time={quote(format_time(record.created))}", f"level={level}", f"msg={quote(msg)}"]
        parts.extend(f"{key}={quote(str(fields[key]))}" for key in sorted(fields))
        return " ".join(parts)


class FdHandler(logging.Handler):
    """Writes each line with a single write(2) on a raw fd.

    The log FIFO is shared by the supervisor, the zygote and every worker (they inherit fd 2);
    one write of at most PIPE_BUF bytes is atomic, so lines from different processes never interleave.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(self.fd, data):]
        except Exception:  # logging must never take the shim down
            self.handleError(record)


def configure(stream: TextIO | int, level: str, **fields: str) -> logging.Handler:
    """Send the root logger's records to `stream` as logrus lines with `fields` on each line.

    `level` is a logrus or logging level name (`debug`, `info`, `warn`, ...). Replaces handlers that
    an earlier call installed. Returns the handler.
    """
    handler: logging.Handler
    handler = FdHandler(stream) if isinstance(stream, int) else logging.StreamHandler(stream)
    handler.setFormatter(LogrusFormatter(fields))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_number(level))
    return handler


LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL,
          "critical": logging.CRITICAL}
"""logrus/containerd level names (lower case) -> logging levels."""


def level_number(level: str) -> int:
    """The logging level for a logrus/containerd level name (`trace` and `debug` -> DEBUG)."""
    value = LEVELS.get(level.strip().lower())
    if value is None:
        raise ValueError(f"unknown log level {level!r}")
    return value


def open_log_fifo(bundle: str) -> int | None:
    """Open `<bundle>/log` for writing (blocking mode), or None if it does not exist.

    containerd holds the FIFO open O_RDWR before it runs `start`, so a non-blocking O_WRONLY open
    succeeds at once; without a reader it fails with ENXIO instead of hanging, and we return None.
    """
    path = os.path.join(bundle, "log")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return None
        raise
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    return fd


def write_line(bundle: str, level: str, message: str, **fields: str) -> None:
    """One logrus line into `<bundle>/log`, for a process that has no logger on it (`start`, whose own
    output containerd reads as the address); nothing when there is no reader or no FIFO."""
    try:
        fd = open_log_fifo(bundle)
    except OSError:
        return
    if fd is None:
        return
    record = logging.LogRecord("wasmvisor", level_number(level), "", 0, message, None, None)
    try:
        os.write(fd, (LogrusFormatter(fields).format(record) + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass
    finally:
        os.close(fd)
