"""The JSON-lines messages between the supervisor and a worker."""

from __future__ import annotations

import orjson
import pytest

from wasmvisor.ipc import messages
from wasmvisor.ipc.messages import (
    PROTOCOL_VERSION,
    Configure,
    Exited,
    Failed,
    Joined,
    Message,
    ProtocolError,
    Ready,
    Started,
    StartGuest,
    decode,
    encode,
)

EXAMPLES: list[Message] = [
    Configure(namespace="default", id="t1", bundle="/b", rootfs="/b/rootfs", stdout="/fifo/out",
              terminal=True, log_level="debug"),
    Configure(namespace="default", id="t1", bundle="/b", rootfs="/b/rootfs", await_join=True),
    Joined(),
    StartGuest(),
    Ready(pid=42),
    Ready(pid=42, phases={"configure": [1, 2], "module": [3, 4]}),
    Failed(code="INVALID_ARGUMENT", message="module /app.wasm: not a wasm file"),
    Started(pid=42),
    Exited(code=137, at_ns=1_700_000_000_999_999_999),
    Exited(code=0, at_ns=9, phases={"run": [5, 9]}),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: m.kind)
def test_every_message_survives_a_round_trip(msg: Message) -> None:
    line = encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == msg
    assert decode(line.rstrip(b"\n")) == msg


def test_lines_carry_version_and_kind() -> None:
    body = orjson.loads(encode(Ready(pid=7)))
    assert body == {"v": PROTOCOL_VERSION, "kind": "ready", "pid": 7, "phases": {}}


def test_messages_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Ready(pid=1).pid = 2  # type: ignore[misc]


def test_configure_defaults_name_the_wasmtime_engine() -> None:
    config = Configure(namespace="n", id="i", bundle="/b", rootfs="/r")
    assert config.engine == "wasmvisor.engines.wasmtime_engine:WasmtimeEngine"
    assert (config.stdin, config.stdout, config.stderr, config.terminal) == ("", "", "", False)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"not json\n", "malformed ipc line"),
        (b"[1]\n", "not an object"),
        (b'{"kind": "ready", "pid": 1}\n', "protocol version None"),
        (b'{"v": 99, "kind": "ready", "pid": 1}\n', "protocol version 99"),
        # Version 1 had Failed.stage (and Started.at_ns, Exited.reason): nothing read them.
        (b'{"v": 1, "kind": "failed", "stage": "create", "code": "INTERNAL", "message": "x"}\n',
         "protocol version 1, want 2"),
        (b'{"v": %d, "kind": "reboot"}\n' % PROTOCOL_VERSION, "unknown ipc message kind 'reboot'"),
        (b'{"v": %d, "pid": 1}\n' % PROTOCOL_VERSION, "unknown ipc message kind None"),
        (b'{"v": %d, "kind": "ready"}\n' % PROTOCOL_VERSION, "bad fields for ipc message 'ready'"),
        (b'{"v": %d, "kind": "ready", "pid": 1, "extra": 2}\n' % PROTOCOL_VERSION,
         "bad fields for ipc message 'ready'"),
    ],
)
def test_bad_lines_are_errors_that_show_the_line(line: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode(line)
    assert problem in str(err.value)
    assert line.rstrip(b"\n").decode()[:20] in str(err.value)


def test_kinds_are_unique_and_complete() -> None:
    assert set(messages.KINDS) == {"configure", "joined", "start", "ready", "failed", "started", "exited"}
