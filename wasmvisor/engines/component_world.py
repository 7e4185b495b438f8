"""What a component needs, read from its binary without compiling it: the names of its top-level
imports and exports, and from them the engine that can run it.

wasmtime-py 50 runs WASI 0.2 command components in the worker's own process; it has no host side for
`wasi:http/incoming-handler` and cannot link WASI 0.3 (`wasi:cli/exit@0.3.0`). Those go to the wasmtime
CLI (wasmvisor.engines.wasmtime_cli). The choice is made here, from names alone, before anything is
compiled: compiling an 18 MB Python component takes ~12 s, which the wrong engine must not spend.

The binary format (component model, `Binary.md`): a component is a sequence of sections (id byte,
LEB128 size); section 10 holds imports, 11 exports. An import is `externname externdesc`; an export
`externname sortidx externdesc?`. An externname is a 0x00 or 0x01 byte and a LEB128-sized UTF-8 name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

IMPORT_SECTION = 10
EXPORT_SECTION = 11


COMPONENT_VERSION = b"\x0d\x00\x01\x00"
"""Bytes 4..8 of a component binary (a core module has 01 00 00 00)."""


def is_component(head: bytes) -> bool:
    """Whether the first 8 bytes of a wasm binary are those of a component."""
    return head[4:8] == COMPONENT_VERSION


class ComponentFormatError(ValueError):
    """The bytes are not a component this parser can read; the message says where."""


class Route(Enum):
    """Which engine runs a component, and how."""

    COMMAND = "WASI 0.2 command (wasmtime-py)"
    HTTP = "wasi:http/incoming-handler (wasmtime CLI serve)"
    COMMAND_P3 = "WASI 0.3 command (wasmtime CLI run)"


@dataclass(frozen=True)
class World:
    imports: tuple[str, ...]
    exports: tuple[str, ...]

    @property
    def route(self) -> Route:
        """HTTP when it exports an HTTP handler (0.2's incoming-handler, 0.3's handler); a 0.3
        command when it imports a `wasi:*@0.3` interface; else a 0.2 command (or a function export)."""
        if any(_is_http_handler(name) for name in self.exports):
            return Route.HTTP
        if any(name.startswith("wasi:") and "@0.3" in name for name in self.imports):
            return Route.COMMAND_P3
        return Route.COMMAND

    @property
    def wasi_p3(self) -> bool:
        """Whether it uses a WASI 0.3 interface (the CLI then needs component-model-async)."""
        return any(name.startswith("wasi:") and "@0.3" in name for name in (*self.imports, *self.exports))


def _is_http_handler(name: str) -> bool:
    return name.startswith(("wasi:http/incoming-handler@", "wasi:http/handler@"))


def read_world(wasm: bytes) -> World:
    """The top-level import and export names of the component `wasm`."""
    reader = _Reader(wasm)
    if reader.take(8)[4:8] != b"\x0d\x00\x01\x00":
        raise ComponentFormatError("not a component (no component header)")
    imports: list[str] = []
    exports: list[str] = []
    while not reader.done():
        section, size = reader.byte(), reader.u32()
        body = _Reader(reader.take(size), base=reader.at - size)
        if section == IMPORT_SECTION:
            for _ in range(body.u32()):
                imports.append(body.extern_name())
                body.extern_desc()
        elif section == EXPORT_SECTION:
            for _ in range(body.u32()):
                exports.append(body.extern_name())
                body.sort_index()
                if body.byte() == 0x01:
                    body.extern_desc()
    return World(tuple(imports), tuple(exports))


class _Reader:
    def __init__(self, data: bytes, base: int = 0) -> None:
        self.data = data
        self.at = 0
        self.base = base

    def done(self) -> bool:
        return self.at >= len(self.data)

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ComponentFormatError(f"unexpected end at offset {self.base + self.at:#x}")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        value, shift = 0, 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 35:
                raise ComponentFormatError(f"LEB128 too long at offset {self.base + self.at:#x}")

    def extern_name(self) -> str:
        kind = self.byte()
        if kind not in (0x00, 0x01):
            raise ComponentFormatError(f"unknown name kind {kind:#x} at offset {self.base + self.at - 1:#x}")
        return self.take(self.u32()).decode("utf-8", errors="replace")

    def sort_index(self) -> None:
        if self.byte() == 0x00:  # a core sort carries one more byte
            self.byte()
        self.u32()

    def extern_desc(self) -> None:
        kind = self.byte()
        if kind == 0x00:  # core module: 0x11 typeidx
            self.byte()
            self.u32()
        elif kind in (0x01, 0x04, 0x05):  # func, component, instance: typeidx
            self.u32()
        elif kind == 0x02:  # value bound: 0x00 valueidx, or 0x01 valtype
            if self.byte() == 0x00:
                self.u32()
            else:
                self._valtype()
        elif kind == 0x03:  # type bound: 0x00 typeidx (eq), or 0x01 (sub resource)
            if self.byte() == 0x00:
                self.u32()
        else:
            raise ComponentFormatError(f"unknown extern kind {kind:#x} at offset {self.base + self.at - 1:#x}")

    def _valtype(self) -> None:
        first = self.data[self.at] if self.at < len(self.data) else 0
        if first >= 0x73:  # a primitive value type is one byte (0x73..0x7f)
            self.byte()
        else:
            self.u32()  # a type index (a non-negative s33 below 0x40 reads like u32 here)
