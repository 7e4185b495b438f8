"""The one reader of /proc/self/mountinfo: the mount points of this mount namespace, in mount order.

Cheap to import (only `os`): the `delete` action reads it to learn whether it must unmount at all.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `delete` keeps typing unloaded
if TYPE_CHECKING:
    from collections.abc import Iterable

MOUNTINFO = "/proc/self/mountinfo"
_OCTAL = b"01234567"


def unescape(field: str) -> str:
    """A mountinfo field as the path it names: the kernel writes space, tab, newline and backslash
    as `\\ooo` octal (`\\040` for a space, `\\134` for a backslash)."""
    if "\\" not in field:
        return field
    raw = os.fsencode(field)
    out = bytearray()
    i = 0
    while i < len(raw):
        digits = raw[i + 1:i + 4]
        if raw[i] == 0x5C and len(digits) == 3 and all(d in _OCTAL for d in digits):
            out.append(int(digits, 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def parse_mount_points(text: str) -> list[str]:
    """The mount point (fifth field) of each line of a mountinfo text, unescaped, in order
    (stacked mounts repeat their point)."""
    points = []
    for line in text.splitlines():
        fields = line.split(" ", 5)
        if len(fields) > 4:
            points.append(unescape(fields[4]))
    return points


def mount_points(path: str = MOUNTINFO) -> list[str]:
    """Every mount point of this mount namespace, in mount order. Raises OSError when `path`
    cannot be read."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return parse_mount_points(f.read())


def is_under(point: str, top: str) -> bool:
    """Whether `point` is `top` or below it (`/a/bc` is not below `/a/b`, `/a/b` is `/a/b/`)."""
    base = top.rstrip("/")
    return point == (base or "/") or point.startswith(base + "/")


def points_under(top: str, points: Iterable[str]) -> list[str]:
    """The points at `top` or below it, in their order."""
    return [point for point in points if is_under(point, top)]
