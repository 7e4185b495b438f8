"""The messages on the pipe between the supervisor and a worker: JSON, one per line, versioned.

Every line is an object with `v` (protocol version) and `kind`. `encode` and `decode` are the only
places that turn messages into bytes and back; a malformed line or an unknown kind raises
`ProtocolError` with the line in its message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

PROTOCOL_VERSION = 2
"""2: Failed.stage, Started.at_ns and Exited.reason, which nothing read, are gone."""


class ProtocolError(Exception):
    """A line on the worker pipe that is not a valid message."""


@dataclass(frozen=True)
class LayerFile:
    """A wasm layer of the container's image that the supervisor wrote to a file of the bundle
    (the pipe carries the path, never the bytes)."""

    media_type: str
    digest: str
    path: str


@dataclass(frozen=True)
class Configure:
    """supervisor -> worker, first line: what container to prepare."""

    kind: ClassVar[str] = "configure"
    namespace: str
    id: str
    bundle: str
    rootfs: str
    engine: str = "wasmvisor.engines.wasmtime_engine:WasmtimeEngine"
    """`module:attribute` of the Engine class the worker runs the guest with."""
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    log_level: str = "info"
    pod: str = ""
    """The supervisor's group, for the worker's log lines (pod=)."""
    wasm_layers: tuple[LayerFile, ...] = ()
    """The image's wasm layers (OCI Wasm image): the module comes from them, not from the rootfs.
    Optional (added within protocol version 1: a Configure without it means none)."""
    exec_id: str = ""
    """Set for an exec process (Task API Exec) of the task `id`: the worker joins the container of
    `exec_target_pid` (its process on the host) and runs `exec_process` (an OCI process object)."""
    exec_target_pid: int = 0
    exec_process: dict[str, Any] | None = None
    exec_in_wasm: bool = False
    """The container runs a wasm guest: its execs may only be wasm modules."""
    console: str = ""
    """With `terminal`: the path of the pty slave the supervisor made, the process's stdio and
    controlling terminal (the supervisor copies the master to and from the stdio FIFOs)."""
    await_join: bool = False
    """The supervisor moves the worker into its task's cgroup while it sets up and says `Joined` when
    done: the worker waits for that once its namespaces are entered, before its container process
    exists (forked into a pid namespace, or itself), so that process and all it loads are accounted
    there. Optional (added within protocol version 2: without it the worker is in its cgroup at once)."""

    def __post_init__(self) -> None:
        if not isinstance(self.wasm_layers, tuple) or any(not isinstance(x, LayerFile) for x in self.wasm_layers):
            layers = tuple(layer if isinstance(layer, LayerFile) else LayerFile(**layer) for layer in self.wasm_layers)
            object.__setattr__(self, "wasm_layers", layers)


@dataclass(frozen=True)
class Joined:
    """supervisor -> worker, with `Configure.await_join`: the worker is in its task's cgroup now."""

    kind: ClassVar[str] = "joined"


@dataclass(frozen=True)
class StartGuest:
    """supervisor -> worker: run the prepared guest now."""

    kind: ClassVar[str] = "start"


Phases = dict[str, list[int]]
"""Phase name -> [start, end] in ns since the epoch, as a worker measured them (for trace spans)."""


@dataclass(frozen=True)
class Ready:
    """worker -> supervisor: the container is prepared (Create may return)."""

    kind: ClassVar[str] = "ready"
    pid: int
    phases: Phases = field(default_factory=dict)
    """How long each step of the preparation took (optional within protocol version 2)."""


@dataclass(frozen=True)
class Failed:
    """worker -> supervisor: preparing the container failed (Create's answer).

    `code` is the status code name the supervisor answers with (e.g. "INVALID_ARGUMENT")."""

    kind: ClassVar[str] = "failed"
    code: str
    message: str


@dataclass(frozen=True)
class Started:
    """worker -> supervisor: the guest's first instruction is about to run."""

    kind: ClassVar[str] = "started"
    pid: int
    execs: bool = False
    """A native program is exec'd next: the pipe closes then (close-on-exec) while the program runs on."""


@dataclass(frozen=True)
class Exited:
    """worker -> supervisor: the guest ended with `code` (137 for a trap) at `at_ns` (ns since the epoch)."""

    kind: ClassVar[str] = "exited"
    code: int
    at_ns: int
    note: str = ""
    """What a wasm worker would have logged after its guest started (a trap, a time limit): its log
    FIFO is closed before the guest runs, so the supervisor logs this for it. Optional."""
    phases: Phases = field(default_factory=dict)
    """`run`: from the guest's start to its end (optional within protocol version 2)."""


Message = Configure | Joined | StartGuest | Ready | Failed | Started | Exited

KINDS: dict[str, type[Any]] = {
    cls.kind: cls for cls in (Configure, Joined, StartGuest, Ready, Failed, Started, Exited)
}


def encode(msg: Message) -> bytes:
    """One message as one line of JSON, newline included."""
    body = {"v": PROTOCOL_VERSION, "kind": msg.kind, **dataclasses.asdict(msg)}
    return orjson.dumps(body) + b"\n"


def decode(line: bytes) -> Message:
    """The message on one line (with or without its newline)."""
    shown = line[:200].decode("utf-8", "replace").rstrip("\n")
    try:
        body = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"malformed ipc line {shown!r}: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"ipc line is not an object: {shown!r}")
    version = body.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"ipc line has protocol version {version!r}, want {PROTOCOL_VERSION}: {shown!r}")
    kind = body.pop("kind", None)
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown ipc message kind {kind!r}: {shown!r}")
    try:
        return cls(**body)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ProtocolError(f"bad fields for ipc message {kind!r}: {exc}: {shown!r}") from None
