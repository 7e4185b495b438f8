"""The node's template protocol, both ends: the one request `start` (template_client.py) sends the
template (template_server.py), and how the template reads it back. The answer is one line, `pid N`
or `error MESSAGE`.

Cheap to import (only `os`): `start`'s slow path encodes a request with it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # `start` imports this module: no typing
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

REQUEST_LIMIT = 4 << 20
"""Bytes of one request: the environment and the command line (Linux allows 2 MiB of each)."""

MAGIC = "wasmvisor-template/1"
"""The first field of a request; the template refuses any other."""


def encode_request(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> bytes:
    """One request: its length in decimal and a newline, then NUL-separated fields: MAGIC, cwd, the
    number of arguments, the arguments, then `KEY=VALUE` per environment variable. NUL is the one byte
    no argument, variable or path can hold, and this needs no `json` (3 ms of imports) in `start`."""
    fields = [MAGIC, cwd, str(len(argv)), *argv, *(f"{k}={v}" for k, v in env.items())]
    payload = b"\0".join(os.fsencode(f) for f in fields)
    return b"%d\n" % len(payload) + payload


class Request:
    """One parsed request: the `serve` command line (no program name), environment, working directory."""

    __slots__ = ("argv", "env", "cwd")

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd


def parse_request(data: bytes) -> Request:
    """Decode one request's payload (template_client.encode_request, after its length line);
    ValueError naming what is wrong."""
    fields = [os.fsdecode(f) for f in data.split(b"\0")]
    if len(fields) < 3 or fields[0] != MAGIC:
        raise ValueError(f"request does not start with {MAGIC}")
    cwd, count = fields[1], fields[2]
    if not count.isdigit() or not 0 < int(count) <= len(fields) - 3:
        raise ValueError(f"request argument count {count[:20]!r} does not fit the request")
    argv = fields[3:3 + int(count)]
    env: dict[str, str] = {}
    for item in fields[3 + int(count):]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"request environment entry {item[:40]!r} is not KEY=VALUE")
        env[key] = value
    if argv[-1] != "serve":
        raise ValueError(f"request argv ends with {argv[-1]!r}, not the serve action")
    if not os.path.isabs(cwd):
        raise ValueError(f"request cwd {cwd[:80]!r} is not an absolute path")
    return Request(argv, env, cwd)


def request_payload(data: bytes, ended: bool = False) -> bytes | None:
    """The payload of one request from the bytes received so far (its length line, then as many
    bytes), or None while more must come. ValueError when it cannot be one (`ended`: no more will)."""
    head, newline, rest = data.partition(b"\n")
    if not newline:
        if len(data) >= 24:
            raise ValueError("request does not start with its length")
        if ended:
            raise ValueError("request ended before its length")
        return None
    if not head.isdigit() or int(head) > REQUEST_LIMIT:
        raise ValueError(f"request length {head[:24]!r} is not a number up to {REQUEST_LIMIT}")
    size = int(head)
    if len(rest) < size:
        if ended:
            raise ValueError("request ended early")
        return None
    return rest[:size]
