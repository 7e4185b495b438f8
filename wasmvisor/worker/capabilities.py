"""Linux capabilities of the container process: names to numbers (pure), the bounding set, and
the effective/permitted/inheritable/ambient sets a process keeps after an exec (capget/capset and
prctl, from wasmvisor.linux.syscalls). Everything acts on the calling thread, as the kernel's capabilities do.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wasmvisor.errors import Internal, InvalidArgument
from wasmvisor.linux import syscalls

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
"""Linux capability names, indexed by number (linux/capability.h)."""
CAP_NUMBERS = {name: number for number, name in enumerate(CAPABILITIES)}
CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


@dataclass(frozen=True)
class Capabilities:
    """Capability numbers per set, unknown-to-this-kernel ones already left out."""

    bounding: frozenset[int]
    effective: frozenset[int]
    permitted: frozenset[int]
    inheritable: frozenset[int]
    ambient: tuple[int, ...]


def parse_capabilities(caps: object, last_cap: int) -> Capabilities:
    """`process.capabilities` -> numbers per set. A set left out is empty (as runc). An unknown
    name is an error; a known one this kernel lacks (beyond `last_cap`) is skipped, as runc does."""
    if not isinstance(caps, Mapping):
        raise InvalidArgument("process.capabilities must be an object")
    sets: dict[str, list[int]] = {}
    for set_name in CAP_SETS:
        names = caps.get(set_name) or []
        if not isinstance(names, list):
            raise InvalidArgument(f"process.capabilities.{set_name} must be a list of names")
        numbers: list[int] = []
        for name in names:
            number = cap_number(name, f"process.capabilities.{set_name}")
            if number <= last_cap and number not in numbers:
                numbers.append(number)
        sets[set_name] = numbers
    return Capabilities(
        bounding=frozenset(sets["bounding"]),
        effective=frozenset(sets["effective"]),
        permitted=frozenset(sets["permitted"]),
        inheritable=frozenset(sets["inheritable"]),
        ambient=tuple(sets["ambient"]),
    )


def cap_number(name: object, where: str = "capability") -> int:
    """`CAP_NET_BIND_SERVICE` (or without the prefix, any case) -> 10."""
    if isinstance(name, str):
        key = name.upper()
        number = CAP_NUMBERS.get(key if key.startswith("CAP_") else f"CAP_{key}")
        if number is not None:
            return number
    raise InvalidArgument(f"{where}: unknown capability {name!r}")


def cap_mask(numbers: Sequence[int] | frozenset[int]) -> int:
    """Capability numbers -> the bit mask /proc/PID/status shows (CapEff...)."""
    mask = 0
    for number in numbers:
        mask |= 1 << number
    return mask


_last_cap: int | None = None


def last_cap_number() -> int:
    """The kernel's highest capability number: probed with PR_CAPBSET_READ (no /proc needed)."""
    global _last_cap
    if _last_cap is None:
        number = 0
        while True:
            try:
                syscalls.prctl(PR_CAPBSET_READ, number + 1)
            except OSError:  # EINVAL: no such capability
                break
            number += 1
        _last_cap = number
    return _last_cap


def drop_bounding(caps: Capabilities) -> None:
    """Drop from the bounding set every capability `caps.bounding` does not list (needs
    CAP_SETPCAP: done before anything else is dropped)."""
    for number in range(last_cap_number() + 1):
        if number not in caps.bounding:
            prctl(PR_CAPBSET_DROP, number, f"process.capabilities.bounding: drop {CAPABILITIES[number]}")


def set_after_exec(caps: Capabilities, euid: int) -> None:
    """capset to the sets of caps_after_exec, then raise the ambient ones."""
    effective, permitted, inheritable = caps_after_exec(caps, euid, current_capabilities()[1])
    capset(effective, permitted, inheritable)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "process.capabilities.ambient: clear")
    for number in caps.ambient:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, f"process.capabilities.ambient {CAPABILITIES[number]}",
               number, hint="an ambient capability must be in the permitted and inheritable sets")


NO_CAPABILITIES = Capabilities(bounding=frozenset(), effective=frozenset(), permitted=frozenset(),
                               inheritable=frozenset(), ambient=())


def drop_bounding_and_ambient() -> None:
    """Empty the calling thread's bounding and ambient sets (needs CAP_SETPCAP: before a uid change)."""
    drop_bounding(NO_CAPABILITIES)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "capabilities: clear the ambient set")


def clear_sets() -> None:
    """Empty the calling thread's effective, permitted and inheritable sets (always allowed)."""
    capset(frozenset(), frozenset(), frozenset())


def caps_after_exec(caps: Capabilities, euid: int, held: frozenset[int]) -> tuple[
        frozenset[int], frozenset[int], frozenset[int]]:
    """The (effective, permitted, inheritable) sets a process with `caps` has once it execs a
    plain binary, as runc's container process does; the wasm guest runs without an exec, so the
    worker takes them itself (exec_native's execve then leaves them as they are).

    As the kernel computes them at execve (capabilities(7)): for euid 0 every file counts as
    fully capable, so permitted = effective = inheritable | bounding (the spec's effective and
    permitted sets do not matter then, as with runc); for any other uid only the ambient set is
    kept (a spec giving uid 1000 CAP_DAC_OVERRIDE in `effective` alone gives it nothing, with runc
    too). `held` (the worker's permitted set) bounds what capset can grant."""
    ambient = frozenset(caps.ambient) & caps.permitted & caps.inheritable
    if euid == 0:
        permitted = (caps.inheritable | caps.bounding | ambient) & held
    else:
        permitted = ambient & held
    return permitted, permitted, caps.inheritable


def capset(effective: frozenset[int], permitted: frozenset[int], inheritable: frozenset[int]) -> None:
    """capset(2) of the calling thread."""
    try:
        syscalls.capset(cap_mask(effective), cap_mask(permitted), cap_mask(inheritable))
    except OSError as exc:
        err = exc.errno
        names = ", ".join(CAPABILITIES[n] for n in sorted(permitted - current_capabilities()[1]))
        detail = f" (not held by the worker: {names})" if names else ""
        raise syscall_error(err, f"process.capabilities: capset{detail}") from None


def current_capabilities() -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    """The calling thread's (effective, permitted, inheritable) capability numbers (capget(2))."""
    try:
        masks = syscalls.capget()
    except OSError as exc:
        raise syscall_error(exc.errno, "capget") from None
    effective, permitted, inheritable = (frozenset(n for n in range(64) if mask >> n & 1) for mask in masks)
    return effective, permitted, inheritable


def prctl(option: int, arg: int, what: str, arg3: int = 0, hint: str = "") -> None:
    """prctl(2) for the spec's process: a failure is an error naming `what` (InvalidArgument for
    EPERM/EINVAL/EACCES, else Internal)."""
    try:
        syscalls.prctl(option, arg, arg3)
    except OSError as exc:
        raise syscall_error(exc.errno, what, hint) from None


def syscall_error(err: int | None, what: str, hint: str = "") -> Exception:
    reason = os.strerror(err) if err else "failed"
    text = f"{what}: {reason}" + (f" ({hint})" if hint else "")
    if err in (errno.EPERM, errno.EINVAL, errno.EACCES):
        return InvalidArgument(text)
    return Internal(text)
