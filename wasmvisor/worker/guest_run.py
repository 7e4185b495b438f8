"""A worker's second half, shared by a container's worker and an exec's: wait for `StartGuest`,
answer `Started`, run the prepared guest (or exec the native program), answer `Exited`; and how a
failure becomes the `Failed` message's code and text.
"""

from __future__ import annotations

import logging
import signal
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wasmvisor.engines.base import TRAP_EXIT_CODE, Engine, GuestError, PreparedGuest, Stdio
from wasmvisor.errors import Internal, ShimError
from wasmvisor.ipc import messages
from wasmvisor.ipc.channel import Channel
from wasmvisor.ipc.messages import Exited, Started, StartGuest
from wasmvisor.refs import load_class
from wasmvisor.worker.last_words import LastWords
from wasmvisor.worker.native import exec_native
from wasmvisor.worker.stdio import wait_drained

log = logging.getLogger("wasmvisor.worker")

EX_NOEXEC = 127
"""A native program that could not be executed (as a shell says it)."""


def serve_start(channel: Channel, pid: int, native: str | None, guest: PreparedGuest | None,
                process: tuple[Sequence[str], Sequence[str], str], seccomp: Mapping[str, Any] | None,
                guest_mask: set[int], at_start: Callable[[], LastWords] | None = None,
                runner: Callable[[int], object] | None = None) -> int:
    """After `Ready`: wait for `StartGuest` (EOF instead: 0, quietly), then run `native` (exec'd,
    never returns) or `guest`; returns the exit code. `process` is (args, env, cwd). `at_start`
    confines the worker right before the guest runs (worker/confine.py `at_start`): what it logs
    from then on goes in `Exited.note`. `runner(started_ns)` execs the compiled runner for `guest`
    (worker/runner_exec.py), which confines itself and answers `Exited`; when it cannot, this process
    runs the guest."""
    args, env, cwd = process
    start = channel.receive()
    if start is None:
        log.debug("pipe closed before start: exiting")
        return 0
    if not isinstance(start, StartGuest):
        raise messages.ProtocolError(f"got {start.kind!r} while waiting for 'start'")

    # As a native process would have them: a guest writing to a gone reader dies of SIGPIPE (141),
    # one passing RLIMIT_FSIZE of SIGXFSZ (Python ignores both for itself).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, guest_mask)
    channel.send(Started(pid=pid, execs=native is not None))
    running = time.time_ns()
    last_words = LastWords()
    try:
        if native is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, set())  # a native PID 1 handles its own
            exec_native(native, args, env, cwd, seccomp)
        assert guest is not None
        if runner is not None:
            try:
                runner(running)
            except OSError as exc:
                log.warning("guest %s: cannot exec the runner (%s): route python", args[0], exc)
        if at_start is not None:
            last_words = at_start()  # the log FIFO closes: what is left to say goes in Exited
        else:
            logging.getLogger().addHandler(last_words)  # why it ended (a trap's message) goes in Exited too
        result = guest(Stdio(stdin=0, stdout=1, stderr=2))
        reason = getattr(result, "reason", "exit")
        code = int(result) & 0xFF
    except Exception as exc:
        log.error("guest %s failed: %s", args[0], exception_line(exc))
        code, reason = (EX_NOEXEC if native is not None else TRAP_EXIT_CODE), "error"
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # the supervisor may be gone: no SIGPIPE for that
    ended = time.time_ns()
    wait_drained()  # its reader has what the guest wrote before the exit is told
    instantiated = getattr(guest, "instantiated_ns", 0) or running  # an engine that does not say: all is run
    phases = {"instantiate": [running, instantiated], "run": [instantiated, ended]}
    channel.send(Exited(code=code, at_ns=ended, note=last_words.text(), phases=phases))
    log.debug("exited: code %d (%s)", code, reason)
    return code


def no_wasm_terminal(args0: str) -> str:
    """Why a wasm guest is refused a terminal (the engine gives it no tty)."""
    return f"terminal=true: {args0} is a wasm module, and a wasm guest cannot have a tty (run it without -t/--tty)"


def load_engine(ref: str) -> Engine:
    """An instance of the Engine class named `module:Class`."""
    cls: type[Engine] = load_class(ref, Engine, "engine")
    try:
        return cls()
    except Exception as exc:
        raise Internal(f"engine {ref!r}: cannot create: {exc}") from None


def failure_of(exc: BaseException) -> tuple[str, str]:
    """The status code name and message a `Failed` carries for `exc`."""
    if isinstance(exc, ShimError):
        return exc.code.name, exc.message
    if isinstance(exc, GuestError):
        return "INVALID_ARGUMENT", str(exc)
    return "INTERNAL", exception_line(exc)


def exception_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, (ShimError, GuestError, messages.ProtocolError)):
        text += " | " + " | ".join(traceback.format_tb(exc.__traceback__)).replace("\n", " ")
    return text
