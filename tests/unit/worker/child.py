"""Run a function in a forked child (its credentials, limits and filters die with it) and get its
JSON-able result or its error back."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

import orjson


class ChildError(Exception):
    """The child raised: `kind` is the exception's class name, the message its text."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def in_child(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """fn() in a forked child; its return value (through JSON), or ChildError with what it raised."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            try:
                payload = {"ok": fn()}
            except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
                payload = {"error": type(exc).__name__, "message": str(exc), "tb": traceback.format_exc()}
            os.write(write_fd, orjson.dumps(payload))
        except BaseException:  # noqa: BLE001
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as reader:
        while chunk := reader.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    data = orjson.loads(b"".join(chunks))
    if "error" in data:
        raise ChildError(data["error"], data["message"])
    return data["ok"]


def run_child(fn: Callable[[], None]) -> tuple[int, bytes]:
    """fn() in a forked child whose fds 1 and 2 go to one pipe (fn is expected to exec or exit):
    (exit code as waitstatus_to_exitcode gives it, what it wrote)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            os.close(write_fd)
            fn()
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"raised {type(exc).__name__}: {exc}\n".encode())
            os._exit(99)
        finally:
            os._exit(98)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as reader:
        while chunk := reader.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)
