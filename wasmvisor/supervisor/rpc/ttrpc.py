"""ttrpc framing: the 10-byte frame header, reading frames off a stream, encoding responses.

The wire format is containerd/ttrpc's (v1.1 in containerd 1.6, v1.2 in 1.7/2.x; unary calls are the
same in both). The server and client (`ttrpc_server`, `ttrpc_client`) build on this module.
"""

from __future__ import annotations

import asyncio
import struct

from wasmvisor.errors import Code
from wasmvisor.proto import ttrpc_pb2

__all__ = [
    "DISCARD_LIMIT",
    "HEADER",
    "MAX_DATA",
    "MSG_DATA",
    "MSG_REQUEST",
    "MSG_RESPONSE",
    "OversizeFrame",
    "encode_frame",
    "encode_ok_response",
    "encode_status_response",
    "oversize_message",
    "read_frame",
]

HEADER = struct.Struct(">IIBB")
"""length (data bytes after the header), stream id, message type, flags."""
HEADER_SIZE = HEADER.size

MSG_REQUEST = 1
MSG_RESPONSE = 2
MSG_DATA = 3

MAX_DATA = 4 << 20
"""The largest frame payload either side accepts or sends (ttrpc's messageLengthMax)."""

DISCARD_LIMIT = 1 << 24
"""Oversize frames below this are read and thrown away; at or above it the stream is garbage.

Because MAX_DATA is below 16 MiB the first header byte of every valid frame is 0 (ttrpc reserves it),
so a length with that byte set means we are not reading frame headers any more."""

_DISCARD_CHUNK = 1 << 16

# Success responses are built by hand: Response{status: {} (field 1, empty), payload (field 2)}.
# The Go server sends the explicit empty status too (bytes 0a 00).
_OK_STATUS = b"\x0a\x00"
_OK_STATUS_PAYLOAD = b"\x0a\x00\x12"

_MAX_STATUS_MESSAGE = 1 << 16


def oversize_message(length: int) -> str:
    """ttrpc's wording for a message over MAX_DATA (containerd matches on nothing but the code)."""
    return f"message length {length} exceed maximum message size of {MAX_DATA}"


class OversizeFrame(Exception):
    """A frame whose length is over MAX_DATA. `discarded`: its data was skipped and the stream is
    still in sync; otherwise the connection must be dropped."""

    def __init__(self, stream_id: int, msg_type: int, length: int, discarded: bool) -> None:
        super().__init__(oversize_message(length))
        self.stream_id = stream_id
        self.msg_type = msg_type
        self.length = length
        self.discarded = discarded


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """The next frame as (stream_id, msg_type, data); flags are not needed for unary calls.

    Raises asyncio.IncompleteReadError at end of stream and OversizeFrame for a frame over MAX_DATA
    (after reading past its data when it is below DISCARD_LIMIT, in chunks, never buffered whole)."""
    length, stream_id, msg_type, _flags = HEADER.unpack(await reader.readexactly(HEADER_SIZE))
    if length > MAX_DATA:
        if length >= DISCARD_LIMIT:
            raise OversizeFrame(stream_id, msg_type, length, discarded=False)
        remaining = length
        while remaining:
            chunk = await reader.read(min(remaining, _DISCARD_CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(chunk)
        raise OversizeFrame(stream_id, msg_type, length, discarded=True)
    return stream_id, msg_type, await reader.readexactly(length)


def encode_frame(stream_id: int, msg_type: int, data: bytes) -> bytes:
    """One whole frame. The caller checks len(data) <= MAX_DATA."""
    return HEADER.pack(len(data), stream_id, msg_type, 0) + data


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_ok_response(stream_id: int, payload: bytes) -> bytes:
    """A whole Response frame with status code 0 and `payload`, built in one allocation."""
    if not payload:
        return HEADER.pack(2, stream_id, MSG_RESPONSE, 0) + _OK_STATUS
    size = _varint(len(payload))
    length = 3 + len(size) + len(payload)
    return b"".join((HEADER.pack(length, stream_id, MSG_RESPONSE, 0), _OK_STATUS_PAYLOAD, size, payload))


def encode_status_response(stream_id: int, code: int, message: str) -> bytes:
    """A whole Response frame carrying an error status (no payload)."""
    if len(message) > _MAX_STATUS_MESSAGE:
        message = message[:_MAX_STATUS_MESSAGE] + "..."
    response = ttrpc_pb2.Response(status=ttrpc_pb2.Status(code=int(code), message=message))  # type: ignore[attr-defined]
    return encode_frame(stream_id, MSG_RESPONSE, response.SerializeToString())


def resource_exhausted_response(stream_id: int, length: int) -> bytes:
    return encode_status_response(stream_id, Code.RESOURCE_EXHAUSTED, oversize_message(length))
