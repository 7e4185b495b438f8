"""The runtime options wasmvisor accepts from containerd (an Any: on Create, and on `-info`'s stdin).

Cheap to import (errors only): `-info` checks them without loading the Task API.
"""

from __future__ import annotations

from wasmvisor.errors import InvalidArgument

KNOWN_OPTIONS = frozenset({"runtimeoptions.v1.Options", "containerd.runc.v1.Options"})
"""Runtime option types containerd may send: CRI's generic ones and runc's (containerd 1.6 sends either,
from the runtime's config); wasmvisor reads none of their fields yet."""


def check(type_url: str, what: str) -> None:
    """InvalidArgument naming the type when `type_url` is not one of KNOWN_OPTIONS (`what` starts the
    message: `create ID`, `stdin` for -info)."""
    kind = type_url.rsplit("/", 1)[-1]
    if kind not in KNOWN_OPTIONS:
        raise InvalidArgument(f"{what}: runtime options of type {kind!r} are not understood "
                              f"(known: {', '.join(sorted(KNOWN_OPTIONS))})")
