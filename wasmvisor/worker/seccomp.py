"""The spec's `linux.seccomp` profile as a seccomp BPF filter (libseccomp through ctypes).

`parse_profile` is pure (the OCI names to numbers and checks, errors naming the entry);
`compile_profile` has libseccomp build the filter and export it as BPF, which can happen long
before Start; `CompiledFilter.load` installs it on the calling thread with one system call, the
last step before execve. libseccomp.so.2 is opened when this module is imported, which
the zygote does before any worker enters a container root (where the host's libraries are gone).
Semantics follow runc's: unknown syscall names are skipped, a rule whose action is the default
action is skipped, conditions on distinct arguments are ANDed in one rule, and several conditions
on the same argument become one rule each (libseccomp cannot AND them).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass

from wasmvisor.errors import Internal, InvalidArgument, ShimError, Unimplemented
from wasmvisor.linux import syscalls
from wasmvisor.worker.capabilities import current_capabilities

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO = 0x00050000
SCMP_ACT_TRACE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
ACTIONS = {
    "SCMP_ACT_KILL": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
    "SCMP_ACT_ERRNO": SCMP_ACT_ERRNO,
    "SCMP_ACT_TRACE": SCMP_ACT_TRACE,
    "SCMP_ACT_LOG": SCMP_ACT_LOG,
    "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
}
"""OCI action names -> libseccomp values; ERRNO and TRACE also carry a 16-bit return code."""

COMPARE_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
"""OCI comparison names -> libseccomp's `enum scmp_compare`."""

FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}
"""OCI filter flags -> seccomp(2) flag bits (given when the filter is installed)."""

NR_SCMP_ERROR = -1
MAX_ARGS = 6
PR_GET_NO_NEW_PRIVS = 39
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
BPF_INSTRUCTION_SIZE = 8
CAP_SYS_ADMIN = 21


@dataclass(frozen=True)
class Condition:
    index: int
    op: int
    value: int
    value_two: int


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: int
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Profile:
    default_action: int
    architectures: tuple[str, ...]
    """libseccomp's names: `x86_64`, `x86`, `x32`, `aarch64`..."""
    flags: tuple[str, ...]
    rules: tuple[Rule, ...]


def parse_profile(doc: object, where: str = "linux.seccomp") -> Profile:
    """`linux.seccomp` -> Profile; anything unknown or malformed is InvalidArgument naming it."""
    if not isinstance(doc, Mapping):
        raise InvalidArgument(f"{where} must be an object")
    if doc.get("listenerPath"):
        raise Unimplemented(f"{where}.listenerPath: seccomp notification is not supported")
    default = action_value(doc.get("defaultAction"), doc.get("defaultErrnoRet"), f"{where}.defaultAction")
    archs = doc.get("architectures") or []
    flags = doc.get("flags") or []
    syscalls = doc.get("syscalls") or []
    if not isinstance(archs, list) or not isinstance(flags, list) or not isinstance(syscalls, list):
        raise InvalidArgument(f"{where}: architectures, flags and syscalls must be lists")
    for i, flag in enumerate(flags):
        if flag not in FLAGS:
            raise InvalidArgument(f"{where}.flags[{i}]: unknown flag {flag!r}")
    rules = []
    for i, entry in enumerate(syscalls):
        at = f"{where}.syscalls[{i}]"
        if not isinstance(entry, Mapping):
            raise InvalidArgument(f"{at} must be an object")
        names = entry.get("names") or []
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise InvalidArgument(f"{at}.names must be a list of syscall names")
        action = action_value(entry.get("action"), entry.get("errnoRet"), f"{at}.action")
        args = entry.get("args") or []
        if not isinstance(args, list):
            raise InvalidArgument(f"{at}.args must be a list")
        conditions = tuple(condition(arg, f"{at}.args[{j}]") for j, arg in enumerate(args))
        rules.append(Rule(names=tuple(names), action=action, conditions=conditions))
    return Profile(default_action=default, architectures=tuple(arch_name(a, f"{where}.architectures[{i}]")
                                                               for i, a in enumerate(archs)),
                   flags=tuple(flags), rules=tuple(rules))


def action_value(name: object, errno_ret: object, where: str) -> int:
    """`SCMP_ACT_ERRNO` with errnoRet 38 -> 0x00050026; ERRNO and TRACE default to EPERM."""
    if name == "SCMP_ACT_NOTIFY":
        raise Unimplemented(f"{where}: SCMP_ACT_NOTIFY is not supported")
    if not isinstance(name, str) or name not in ACTIONS:
        raise InvalidArgument(f"{where}: unknown action {name!r}")
    value = ACTIONS[name]
    if value in (SCMP_ACT_ERRNO, SCMP_ACT_TRACE):
        code = errno.EPERM if errno_ret is None else errno_ret
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 0xFFFF:
            raise InvalidArgument(f"{where}: errnoRet {errno_ret!r} is not a number from 0 to 65535")
        value |= code
    return value


def condition(arg: object, where: str) -> Condition:
    """One `args` entry: {index, value, valueTwo, op}."""
    if not isinstance(arg, Mapping):
        raise InvalidArgument(f"{where} must be an object")
    index = arg.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_ARGS:
        raise InvalidArgument(f"{where}.index {index!r}: want 0 to {MAX_ARGS - 1}")
    op = arg.get("op")
    if not isinstance(op, str) or op not in COMPARE_OPS:
        raise InvalidArgument(f"{where}.op: unknown comparison {op!r}")
    values = []
    for key in ("value", "valueTwo"):
        value = arg.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise InvalidArgument(f"{where}.{key} {value!r}: want an unsigned 64-bit number")
        values.append(value)
    return Condition(index=index, op=COMPARE_OPS[op], value=values[0], value_two=values[1])


def arch_name(oci: object, where: str) -> str:
    """`SCMP_ARCH_X86_64` -> `x86_64` (libseccomp's name)."""
    if not isinstance(oci, str) or not oci.startswith("SCMP_ARCH_") or len(oci) == len("SCMP_ARCH_"):
        raise InvalidArgument(f"{where}: unknown architecture {oci!r}")
    return oci.removeprefix("SCMP_ARCH_").lower()


def rule_condition_sets(rule: Rule) -> list[tuple[Condition, ...]]:
    """The libseccomp rules one OCI rule becomes: one with all conditions, or (when an argument
    is compared more than once) one per condition, as runc does."""
    indexes = [c.index for c in rule.conditions]
    if len(set(indexes)) == len(indexes):
        return [rule.conditions]
    return [(c,) for c in rule.conditions]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _open_library() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.restype = None
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_add.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_export_bpf.restype = ctypes.c_int
    return lib


_lib = _open_library()


def library() -> ctypes.CDLL:
    if _lib is None:
        raise Unimplemented("linux.seccomp: libseccomp.so.2 is not installed on this host")
    return _lib


def resolve_syscall(name: str) -> int | None:
    """The native syscall number of `name` (a negative pseudo-number for one only other
    architectures have), None when libseccomp does not know it."""
    number = int(library().seccomp_syscall_resolve_name(name.encode()))
    return None if number == NR_SCMP_ERROR else number


class CompiledFilter:
    """A profile compiled to a classic BPF program, ready to install with one system call."""

    def __init__(self, program: bytes, flags: int, skipped: tuple[str, ...]) -> None:
        self.program = program
        self.flags = flags
        """SECCOMP_FILTER_FLAG_* bits for seccomp(2)."""
        self.skipped = skipped
        """Syscall names of the profile libseccomp does not know (left out, as runc does)."""
        # Built now so that load() allocates nothing.
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // BPF_INSTRUCTION_SIZE, ctypes.addressof(self._buffer))

    def load(self) -> None:
        """Install the filter on the calling thread. Without CAP_SYS_ADMIN the kernel wants
        no_new_privs first: then it is set here (as libseccomp's seccomp_load does by default),
        where runc would have loaded the filter earlier, while still privileged."""
        try:
            if syscalls.prctl(PR_GET_NO_NEW_PRIVS) != 1 and not _has_sys_admin():
                syscalls.prctl(PR_SET_NO_NEW_PRIVS, 1)
        except OSError as exc:
            raise _os_error("linux.seccomp: PR_SET_NO_NEW_PRIVS", exc) from None
        try:
            if self.flags:
                syscalls.seccomp(SECCOMP_SET_MODE_FILTER, self.flags, ctypes.byref(self._fprog))
            else:
                syscalls.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self._fprog))
        except OSError as exc:
            raise _os_error("linux.seccomp: installing the filter", exc) from None


def compile_profile(profile: Profile) -> CompiledFilter:
    """`profile` as a BPF program (libseccomp builds and exports it; nothing is loaded)."""
    lib = library()
    ctx = lib.seccomp_init(profile.default_action)
    if not ctx:
        raise Internal("linux.seccomp: seccomp_init failed (bad default action?)")
    skipped: list[str] = []
    try:
        for arch in profile.architectures:
            token = lib.seccomp_arch_resolve_name(arch.encode())
            if not token:
                raise InvalidArgument(f"linux.seccomp.architectures: libseccomp does not know {arch!r}")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc != -errno.EEXIST:  # the native one is there from the start
                _check(rc, f"seccomp_arch_add({arch})")
        for rule in profile.rules:
            if rule.action == profile.default_action:
                continue
            for name in rule.names:
                number = resolve_syscall(name)
                if number is None:
                    skipped.append(name)
                    continue
                for conditions in rule_condition_sets(rule):
                    array = (_ArgCmp * max(1, len(conditions)))(
                        *(_ArgCmp(c.index, c.op, c.value, c.value_two) for c in conditions))
                    rc = lib.seccomp_rule_add_array(ctx, rule.action, number, len(conditions), array)
                    _check(rc, f"rule for {name}")
        program = _export_bpf(lib, ctx)
    finally:
        lib.seccomp_release(ctx)
    flags = 0
    for flag in profile.flags:
        flags |= FLAGS[flag]
    return CompiledFilter(program, flags, tuple(skipped))


def _export_bpf(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        size = os.fstat(fd).st_size
        program = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if not program or len(program) % BPF_INSTRUCTION_SIZE:
        raise Internal(f"linux.seccomp: libseccomp exported a {len(program)}-byte program")
    return program


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise Internal(f"linux.seccomp: {what}: {errno.errorcode.get(-rc, str(-rc))} ({os.strerror(-rc)})")


def _os_error(what: str, exc: OSError) -> Exception:
    err = exc.errno or 0
    text = f"{what}: {os.strerror(err)}"
    return InvalidArgument(text) if err in (errno.EPERM, errno.EACCES, errno.EINVAL) else Internal(text)


def _has_sys_admin() -> bool:
    try:
        return CAP_SYS_ADMIN in current_capabilities()[0]
    except ShimError:
        return False
