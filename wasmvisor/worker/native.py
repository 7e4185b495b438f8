"""The native executor: ELF binaries and `#!` scripts run as the container's process.

`find_native` (before pivot_root) decides from the file's first bytes whether `args[0]` is native;
`exec_native` (after pivot_root and apply_identity, at Start) replaces the worker with it, the
spec's seccomp filter loaded as the very last step. An exec that fails after `Started` was sent
cannot be an RPC error any more (runc reports it from `start`): the worker writes one line to the
container's stderr and exits 127 (not found) or 126 (found but not executable), as a shell does.
"""

from __future__ import annotations

import errno
import os
import posixpath
import signal
import stat
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from wasmvisor.errors import InvalidArgument
from wasmvisor.linux import syscalls
from wasmvisor.spec import resolve_in_root
from wasmvisor.worker import seccomp as seccomp_filter

if TYPE_CHECKING:
    import ctypes

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH when the spec's env has none (containerd's and runc's default)."""
ELF_MAGIC = b"\x7fELF"
SCRIPT_MAGIC = b"#!"
EXIT_NOT_FOUND = 127
EXIT_CANNOT_EXECUTE = 126


def find_native(root: str, args0: str, env: Sequence[str], cwd: str) -> str | None:
    """The container path of `args0` when it names an ELF binary or a `#!` script inside `root`
    (a bare name is looked up in the PATH of `env`), else None (then it is a wasm module).
    Called before pivot_root, with `root` the host path of the container's root.

    Symlinks are followed inside `root` to look at the file, but the path returned is the one
    given (a relative one joined to `cwd`; a PATH hit is `folder/name`). A `path#func`
    entrypoint is wasm by its form: None at once. A bare name not found native on the PATH is None
    too (the wasm engine then takes it relative to `cwd`)."""
    if not args0 or "#" in args0:
        return None
    if "/" in args0:
        return _native_at(root, args0, cwd, need_exec=False)
    for folder in path_dirs(env):
        found = _native_at(root, posixpath.join(folder, args0), cwd, need_exec=True)
        if found is not None:
            return found
    return None


def path_dirs(env: Sequence[str]) -> list[str]:
    """The folders of the last `PATH=` in `env` (DEFAULT_PATH without one); an empty entry is `.`."""
    value = DEFAULT_PATH
    for entry in env:
        if entry.startswith("PATH="):
            value = entry[len("PATH="):]
    return [folder or "." for folder in value.split(":")]


def is_native_header(head: bytes) -> bool:
    """True for the first bytes of an ELF binary or a `#!` script."""
    return head.startswith(ELF_MAGIC) or head.startswith(SCRIPT_MAGIC)


def _native_at(root: str, path: str, cwd: str, need_exec: bool) -> str | None:
    try:
        host = resolve_in_root(root, path, cwd)
    except InvalidArgument:
        return None
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (need_exec and not info.st_mode & 0o111):
            return None
        head = os.pread(fd, 4, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not is_native_header(head):
        return None
    # The path as given (like Go's exec.LookPath for runc), not the resolved one: a script's $0
    # and a multi-call binary's name stay what the spec says. After pivot_root the kernel
    # resolves it inside the root just as resolve_in_root did here.
    return path if path.startswith("/") else posixpath.join(cwd or "/", path)


def exec_native(path: str, args: Sequence[str], env: Sequence[str], cwd: str,
                seccomp: Mapping[str, Any] | None) -> NoReturn:
    """Replace the calling process with the container's program: chdir(cwd), apply the spec's
    `linux.seccomp` (when not None), execve(path, args, env). Called after pivot_root and
    apply_identity, at Start. Raises ShimError subclasses with a clear message.

    What can fail before the filter is loaded (a bad profile, chdir, arguments with NUL bytes)
    raises (the profile is compiled here unless `prepare_seccomp` compiled it already). Once the
    filter is in place no more Python work may be needed, so a failing execve writes
    `wasmvisor: exec PATH: REASON` to fd 2 and exits 127 (ENOENT, ENOTDIR) or 126 (EACCES,
    ENOEXEC...), like a shell."""
    compiled = _compiled(seccomp)
    _enter_cwd(cwd)
    argv = _c_strings(args, "process.args")
    envp = _c_strings(env, "process.env")
    c_path = _c_string(path, "process.args[0]")
    _reset_signals()
    _close_on_exec_from(3)
    if compiled is not None:
        compiled.load()  # last step before execve: nothing below may need a syscall the filter blocks
    _exec_failed(path, syscalls.execve(c_path, argv, envp))


def _enter_cwd(cwd: str) -> None:
    try:
        os.chdir(cwd)
    except PermissionError as exc:
        # apply_identity entered it while still root (as runc does): then that stands.
        if os.getcwd() != posixpath.normpath(cwd):
            raise InvalidArgument(f"process.cwd {cwd}: chdir: {exc.strerror}") from None
    except OSError as exc:
        raise InvalidArgument(f"process.cwd {cwd}: chdir: {exc.strerror}") from None


def prepare_seccomp(seccomp: Mapping[str, Any] | None) -> None:
    """Compile the spec's `linux.seccomp` now (at Create: a bad profile then fails Create, and
    Start only installs the ready program). Optional: exec_native compiles what was not prepared."""
    global _prepared
    _prepared = None if seccomp is None else (seccomp, _compile(seccomp))


_prepared: tuple[Mapping[str, Any], seccomp_filter.CompiledFilter] | None = None


def _compiled(profile: Mapping[str, Any] | None) -> seccomp_filter.CompiledFilter | None:
    if profile is None:
        return None
    if _prepared is not None and (_prepared[0] is profile or _prepared[0] == profile):
        return _prepared[1]
    return _compile(profile)


def _compile(profile: Mapping[str, Any]) -> seccomp_filter.CompiledFilter:
    return seccomp_filter.compile_profile(seccomp_filter.parse_profile(profile))


def _exec_failed(path: str, err: int) -> NoReturn:
    code = exit_code_of_exec_error(err)
    try:
        os.write(2, f"wasmvisor: exec {path}: {os.strerror(err)}\n".encode(errors="replace"))
    finally:
        os._exit(code)


def exit_code_of_exec_error(err: int) -> int:
    """The exit status a failed exec of a native program gives: 127 not found, else 126."""
    return EXIT_NOT_FOUND if err in (errno.ENOENT, errno.ENOTDIR) else EXIT_CANNOT_EXECUTE


def _c_string(value: str, where: str) -> bytes:
    data = os.fsencode(value)
    if b"\0" in data:
        raise InvalidArgument(f"{where} {value!r}: contains a NUL byte")
    return data


def _c_strings(values: Sequence[str], where: str) -> ctypes.Array[ctypes.c_char_p]:
    """A NULL-terminated `char *[]`, built before the filter is loaded."""
    return syscalls.c_string_array([_c_string(v, f"{where}[{i}]") for i, v in enumerate(values)])


def _reset_signals() -> None:
    """Ignored signals stay ignored across execve, and the mask stays: give the program what a
    fresh process has (Python ignores SIGPIPE and SIGXFSZ for itself)."""
    for sig in signal.Signals:
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(sig) is not signal.SIG_DFL:
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _close_on_exec_from(first: int) -> None:
    """Mark every fd from `first` up close-on-exec: the supervisor's socket, the log fd and the
    wasm engine's files must not leak into the container's program."""
    try:
        syscalls.close_range(first, flags=syscalls.CLOSE_RANGE_CLOEXEC)
        return
    except OSError:
        pass  # before Linux 5.11 (CLOSE_RANGE_CLOEXEC): one fd at a time
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(first, 1024))
    for fd in fds:
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass

