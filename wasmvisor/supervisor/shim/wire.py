"""The few protobuf wire-format pieces the shim's fast paths encode and decode by hand.

`start` and `delete` run under `python -I -S` for every task and load no protobuf runtime (~35 ms):
the Group service's ttrpc frames (claim.py) and containerd 2.3's BootstrapParams on `start`'s stdin
(bootstrap_params.py) are a few dozen bytes, read and written here. Only varints and length-delimited
fields are produced; fixed-width fields are skipped when read. Protocol reference, section 2.10.
"""

from __future__ import annotations

VARINT = 0
LENGTH_DELIMITED = 2


def varint(value: int) -> bytes:
    """`value` as a protobuf varint (a negative int32/int64 takes ten bytes, as Go writes it)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | LENGTH_DELIMITED) + varint(len(data)) + data


def varint_field(number: int, value: int) -> bytes:
    return varint(number << 3 | VARINT) + varint(value)


def read_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """Every (field number, value) of `data` in order: an int for a varint, bytes for a length-delimited
    field; fixed-width fields are skipped. ValueError when `data` is not a protobuf message."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0

    def read_varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while pos < len(data):
        key = read_varint()
        number, kind = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if kind == VARINT:
            fields.append((number, read_varint()))
        elif kind == LENGTH_DELIMITED:
            size = read_varint()
            if pos + size > len(data):
                raise ValueError("truncated field")
            fields.append((number, data[pos:pos + size]))
            pos += size
        elif kind in (1, 5):
            pos += 8 if kind == 1 else 4
            if pos > len(data):
                raise ValueError("truncated field")
        else:
            raise ValueError(f"wire type {kind}")
    return fields


def last_fields(data: bytes) -> dict[int, int | bytes]:
    """The fields of `data` by number, the last of each winning (as protobuf merges a scalar)."""
    return dict(read_fields(data))
