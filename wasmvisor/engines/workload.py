"""A workload's own limits and engine settings, chosen with annotations on its container (pure).

Least privilege by choice: by default a guest gets the container's root preopened as `/`, read-write,
with no time or fuel limit and the node's wasmtime settings. These annotations narrow or tune that:

    wasmvisor.io/preopens        CONTAINER_PATH[:GUEST_PATH][:ro|rw], comma-separated: the guest's
                                 only preopens (the root is then preopened only when listed)
    wasmvisor.io/readonly-root   true|false: the root preopen `/` is read-only
    wasmvisor.io/time-limit      a wall-clock limit (500ms, 30s, 5m, 1h): epoch interruption ends the
                                 guest with 137
    wasmvisor.io/fuel            instructions' fuel (a positive integer): out of fuel ends it with 137
    wasmvisor.io/wasmtime.NAME   a wasmtime setting of WASMTIME_SETTINGS (opt-level, gc, exceptions...)

Fuel, the time limit and the wasmtime settings change the compiled code: `engine_key` names them, and
engines add it to the compiled-module cache's key. Any bad value is InvalidArgument naming the
annotation. Kept apart from any one engine, so that every wasmtime-based engine reads the same
annotations the same way (`configure` sets the attributes of a wasmtime.Config).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wasmvisor.errors import InvalidArgument

PREFIX = "wasmvisor.io/"
PREOPENS = PREFIX + "preopens"
READONLY_ROOT = PREFIX + "readonly-root"
TIME_LIMIT = PREFIX + "time-limit"
FUEL = PREFIX + "fuel"
WASMTIME = PREFIX + "wasmtime."

OPT_LEVELS = ("none", "speed", "speed_and_size")
WASMTIME_SETTINGS: dict[str, tuple[str, str]] = {
    "opt-level": ("cranelift_opt_level", "opt-level"),
    "gc": ("wasm_gc", "bool"),
    "function-references": ("wasm_function_references", "bool"),
    "exceptions": ("wasm_exceptions", "bool"),
    "tail-call": ("wasm_tail_call", "bool"),
    "simd": ("wasm_simd", "bool"),
    "relaxed-simd": ("wasm_relaxed_simd", "bool"),
    "multi-memory": ("wasm_multi_memory", "bool"),
    "memory64": ("wasm_memory64", "bool"),
    "wide-arithmetic": ("wasm_wide_arithmetic", "bool"),
    "nan-canonicalization": ("cranelift_nan_canonicalization", "bool"),
}
"""`wasmvisor.io/wasmtime.NAME` -> (wasmtime.Config attribute, value kind)."""
GC_NEEDS = ("wasm_function_references", "wasm_reference_types")
"""What wasm_gc needs on as well (wasmtime refuses GC without them)."""
NEEDS = {"wasm_relaxed_simd": "wasm_simd", "wasm_gc": "wasm_function_references"}
"""Setting -> the setting it needs on. wasmtime's C API aborts the process on such a conflict, so they are
refused here (both set) or resolved (the one needed is turned off: so is the other)."""

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_TIME_LIMIT_S = 30 * 24 * 3600.0


@dataclass(frozen=True)
class Preopen:
    """One directory the guest gets: `container_path` (in the container's root) seen as `guest_path`."""

    container_path: str
    guest_path: str
    writable: bool = True


@dataclass(frozen=True)
class WorkloadOptions:
    """What a container's annotations chose; the defaults are what a container without them gets."""

    preopens: tuple[Preopen, ...] | None = None
    """None: the root as `/` (read-only when `readonly_root`); else exactly these."""
    readonly_root: bool = False
    time_limit_s: float | None = None
    fuel: int | None = None
    wasmtime: tuple[tuple[str, Any], ...] = field(default=())
    """(wasmtime.Config attribute, value) pairs, sorted by attribute."""

    def guest_preopens(self) -> tuple[Preopen, ...]:
        """The preopens the guest gets, in order."""
        if self.preopens is not None:
            return self.preopens
        return (Preopen("/", "/", writable=not self.readonly_root),)

    def engine_key(self) -> str:
        """The settings that change compiled code, as a stable string ("" when there are none)."""
        parts = [f"{name}={value}" for name, value in self.wasmtime]
        if self.fuel is not None:
            parts.append("consume_fuel")
        if self.time_limit_s is not None:
            parts.append("epoch_interruption")
        return ",".join(parts)


def parse_workload(annotations: Mapping[str, str]) -> WorkloadOptions:
    """The options `annotations` choose; InvalidArgument naming the first bad annotation."""
    preopens = None
    if PREOPENS in annotations:
        preopens = parse_preopens(annotations[PREOPENS])
    settings = []
    for key, value in sorted(annotations.items()):
        if key.startswith(WASMTIME):
            settings += _setting(key, value)
    return WorkloadOptions(
        preopens=preopens,
        readonly_root=_bool(annotations, READONLY_ROOT),
        time_limit_s=parse_duration(annotations[TIME_LIMIT], TIME_LIMIT) if TIME_LIMIT in annotations else None,
        fuel=_positive(annotations[FUEL], FUEL) if FUEL in annotations else None,
        wasmtime=tuple(sorted(_consistent(dict(settings)).items())),
    )


def _consistent(settings: dict[str, Any]) -> dict[str, Any]:
    for attribute, needed in NEEDS.items():
        if settings.get(needed) is False:
            if settings.get(attribute) is True:
                raise InvalidArgument(f"annotation {WASMTIME}{_name(attribute)}: true needs {WASMTIME}"
                                      f"{_name(needed)} true as well")
            settings[attribute] = False
    return settings


def _name(attribute: str) -> str:
    return next(name for name, (attr, _) in WASMTIME_SETTINGS.items() if attr == attribute)


def parse_preopens(text: str) -> tuple[Preopen, ...]:
    """`/data:/data:ro,/srv/cfg:/etc/app` -> Preopens (a missing guest path is the container path,
    a missing mode is rw)."""
    out: list[Preopen] = []
    for i, entry in enumerate(text.split(",")):
        where = f"annotation {PREOPENS} entry {i + 1} {entry.strip()!r}"
        parts = entry.strip().split(":")
        writable = True
        if len(parts) > 1 and parts[-1] in ("ro", "rw"):
            writable = parts.pop() == "rw"
        if not parts[0] or len(parts) > 2:
            raise InvalidArgument(f"{where}: want CONTAINER_PATH[:GUEST_PATH][:ro|rw]")
        container, guest = parts[0], parts[-1]
        for name, path in (("container path", container), ("guest path", guest)):
            if not path.startswith("/") or ".." in path.split("/"):
                raise InvalidArgument(f"{where}: {name} {path!r} must be absolute, without '..'")
        guest = posixpath.normpath(guest)
        if any(p.guest_path == guest for p in out):
            raise InvalidArgument(f"{where}: guest path {guest} is given twice")
        out.append(Preopen(posixpath.normpath(container), guest, writable))
    return tuple(out)


def parse_duration(text: str, where: str) -> float:
    """`500ms`, `30s`, `1.5m`, `2h` -> seconds."""
    match = _DURATION.match(text.strip())
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if not match or not 0 < seconds <= MAX_TIME_LIMIT_S:
        raise InvalidArgument(f"annotation {where}: {text!r} is not a duration such as 500ms, 30s, 5m or 1h "
                              "(more than 0, at most 30 days)")
    return seconds


def configure(config: Any, options: WorkloadOptions) -> None:
    """Set `options`' engine settings on a wasmtime.Config (fuel and epoch interruption included)."""
    for attribute, value in options.wasmtime:
        setattr(config, attribute, value)
    if dict(options.wasmtime).get("wasm_gc"):
        for attribute in GC_NEEDS:
            setattr(config, attribute, True)
    if options.fuel is not None:
        config.consume_fuel = True
    if options.time_limit_s is not None:
        config.epoch_interruption = True


def _setting(key: str, value: str) -> list[tuple[str, Any]]:
    name = key[len(WASMTIME):]
    known = WASMTIME_SETTINGS.get(name)
    if known is None:
        raise InvalidArgument(f"annotation {key}: unknown wasmtime setting {name!r} (known: "
                              f"{', '.join(sorted(WASMTIME_SETTINGS))})")
    attribute, kind = known
    if kind == "bool":
        return [(attribute, _bool({key: value}, key))]
    if value not in OPT_LEVELS:
        raise InvalidArgument(f"annotation {key}: {value!r} is not one of {', '.join(OPT_LEVELS)}")
    return [(attribute, value)]


def _bool(annotations: Mapping[str, str], key: str) -> bool:
    value = annotations.get(key, "false")
    if value not in ("true", "false"):
        raise InvalidArgument(f"annotation {key}: {value!r} is not true or false")
    return value == "true"


def _positive(text: str, key: str) -> int:
    if not text.isdigit() or int(text) <= 0 or int(text) >= 2**63:
        raise InvalidArgument(f"annotation {key}: {text!r} is not a positive integer")
    return int(text)
