"""The container process's identity and privileges from the spec's `process`: rlimits, umask,
user (uid, gid, additional gids), capabilities (wasmvisor.worker.capabilities) and no_new_privs,
applied in runc's order.

Everything here acts on the calling thread (capabilities and prctl flags are per thread in Linux):
call it from the thread that later runs the guest or execs the native program. Parsing is pure
(`parse_identity`); `apply_identity` only performs the system calls. Nothing is imported or read
lazily: this runs after pivot_root, where the host's files are gone.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wasmvisor.errors import InvalidArgument
from wasmvisor.worker import capabilities
from wasmvisor.worker.capabilities import Capabilities, last_cap_number, parse_capabilities, prctl, syscall_error

RLIMITS = (
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
    "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
)
"""Linux resource names, indexed by number (asm-generic/resource.h)."""
RLIMIT_NUMBERS = {name: number for number, name in enumerate(RLIMITS)}
RLIM_INFINITY_U64 = 2**64 - 1

PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38


@dataclass(frozen=True)
class Rlimit:
    name: str
    number: int
    soft: int
    hard: int


@dataclass(frozen=True)
class Identity:
    """`process` of config.json as the calls to make; None/empty means: leave as it is."""

    rlimits: tuple[Rlimit, ...] = ()
    umask: int | None = None
    uid: int | None = None
    gid: int | None = None
    additional_gids: tuple[int, ...] = ()
    capabilities: Capabilities | None = None
    no_new_privileges: bool = False
    cwd: str | None = None
    """`process.cwd`, entered before the uid changes (see _set_ids)."""


def apply_identity(process: Mapping[str, Any]) -> None:
    """Apply `process.rlimits`, `umask`, `user` (additionalGids, gid, uid), `capabilities` and
    `noNewPrivileges` to the calling process. Called once, after pivot_root.

    Order as runc's: rlimits, umask, bounding set (needs CAP_SETPCAP, so before anything is
    dropped), keep-caps on, groups, gid, uid, keep-caps off, capset (effective, permitted,
    inheritable as they are after an exec: see caps_after_exec), ambient, no_new_privs.
    Errors: InvalidArgument (the spec asks for something unknown or that the kernel refuses),
    Internal (an unexpected failure), naming the field."""
    apply(parse_identity(process))


def parse_identity(process: Mapping[str, Any], last_cap: int | None = None) -> Identity:
    """The calls `process` asks for (pure but for the kernel's last capability, probed once)."""
    if not isinstance(process, Mapping):
        raise InvalidArgument("process must be an object")
    user = process.get("user") or {}
    if not isinstance(user, Mapping):
        raise InvalidArgument("process.user must be an object")
    umask = process.get("umask")
    if umask is not None:
        umask = _id_value(umask, "process.umask", 0o777)
    gids = user.get("additionalGids") or []
    if not isinstance(gids, list):
        raise InvalidArgument("process.user.additionalGids must be a list of numbers")
    caps = process.get("capabilities")
    return Identity(
        rlimits=parse_rlimits(process.get("rlimits") or []),
        umask=umask,
        uid=None if user.get("uid") is None else _id_value(user["uid"], "process.user.uid"),
        gid=None if user.get("gid") is None else _id_value(user["gid"], "process.user.gid"),
        additional_gids=tuple(_id_value(g, f"process.user.additionalGids[{i}]") for i, g in enumerate(gids)),
        capabilities=None if caps is None else parse_capabilities(caps, last_cap_number() if last_cap is None
                                                                  else last_cap),
        no_new_privileges=_bool(process.get("noNewPrivileges", False), "process.noNewPrivileges"),
        cwd=process.get("cwd") if isinstance(process.get("cwd"), str) and process.get("cwd") else None,
    )


def parse_rlimits(entries: object) -> tuple[Rlimit, ...]:
    """`process.rlimits` ([{type, soft, hard}]) -> Rlimit values; an unknown type is an error."""
    if not isinstance(entries, list):
        raise InvalidArgument("process.rlimits must be a list")
    out = []
    for i, entry in enumerate(entries):
        where = f"process.rlimits[{i}]"
        if not isinstance(entry, Mapping):
            raise InvalidArgument(f"{where} must be an object")
        name = entry.get("type")
        if not isinstance(name, str) or name not in RLIMIT_NUMBERS:
            raise InvalidArgument(f"{where}: unknown rlimit type {name!r}")
        soft = _rlimit_value(entry.get("soft", 0), f"{where}.soft")
        hard = _rlimit_value(entry.get("hard", 0), f"{where}.hard")
        out.append(Rlimit(name=name, number=RLIMIT_NUMBERS[name], soft=soft, hard=hard))
    return tuple(out)


def apply(identity: Identity) -> None:
    """Make the system calls `identity` asks for, in runc's order (see apply_identity)."""
    for limit in identity.rlimits:
        soft = resource.RLIM_INFINITY if limit.soft == RLIM_INFINITY_U64 else limit.soft
        hard = resource.RLIM_INFINITY if limit.hard == RLIM_INFINITY_U64 else limit.hard
        try:
            resource.setrlimit(limit.number, (soft, hard))
        except (OSError, ValueError, OverflowError) as exc:
            # CPython turns setrlimit's EPERM into ValueError("not allowed to raise maximum limit").
            reason = exc.strerror if isinstance(exc, OSError) else (
                "Operation not permitted (raising a hard limit needs CAP_SYS_RESOURCE)"
                if "raise maximum" in str(exc) else str(exc))
            raise InvalidArgument(f"process.rlimits {limit.name} soft {limit.soft} hard {limit.hard}: "
                                  f"setrlimit: {reason}") from None
    if identity.umask is not None:
        os.umask(identity.umask)
    caps = identity.capabilities
    if caps is not None:
        capabilities.drop_bounding(caps)
        # Keep the permitted set across the uid change; capset then picks what the spec asks.
        prctl(PR_SET_KEEPCAPS, 1, "process.capabilities: PR_SET_KEEPCAPS")
    if identity.uid is not None or identity.gid is not None or identity.additional_gids:
        _set_ids(identity)
    if caps is not None:
        prctl(PR_SET_KEEPCAPS, 0, "process.capabilities: PR_SET_KEEPCAPS")
        capabilities.set_after_exec(caps, os.geteuid())
    if identity.no_new_privileges:
        prctl(PR_SET_NO_NEW_PRIVS, 1, "process.noNewPrivileges: PR_SET_NO_NEW_PRIVS")


def _set_ids(identity: Identity) -> None:
    user = "process.user"
    if identity.cwd is not None:
        # As runc: enter the working directory while still root, so that a cwd the container's
        # user may not search still works (exec_native's own chdir then finds it entered).
        with contextlib.suppress(OSError):
            os.chdir(identity.cwd)
    try:
        os.setgroups(list(identity.additional_gids))
    except OSError as exc:
        raise syscall_error(exc.errno, f"{user}.additionalGids {list(identity.additional_gids)}: setgroups") from None
    if identity.gid is not None:
        try:
            os.setgid(identity.gid)  # real, effective and saved (the caller is privileged)
        except OSError as exc:
            raise syscall_error(exc.errno, f"{user}.gid {identity.gid}: setgid") from None
    if identity.uid is not None:
        try:
            os.setuid(identity.uid)
        except OSError as exc:
            raise syscall_error(exc.errno, f"{user}.uid {identity.uid}: setuid") from None


def _id_value(value: object, where: str, limit: int = 2**32 - 2) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise InvalidArgument(f"{where} {value!r}: want a number from 0 to {limit}")
    return value


def _rlimit_value(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= RLIM_INFINITY_U64:
        raise InvalidArgument(f"{where} {value!r}: want a number from 0 to {RLIM_INFINITY_U64}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{where} must be true or false")
    return value
