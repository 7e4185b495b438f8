"""The zygote's identity: preloaded into the multiprocessing forkserver, it names that process
`wasmvisor-zygote`, ties its life to the supervisor and shields it from signals meant for others.

Importing this module anywhere else (the supervisor, a worker, a test) changes nothing: the
changes happen only when the import comes from the forkserver's own `main`.

The zygote only imports: it must never compile wasm (a child forked from a process that
compiled with wasmtime's parallel compiler hangs at its own first compile).
"""

from __future__ import annotations

import ctypes
import signal
import sys

from setproctitle import setproctitle

TITLE = "wasmvisor-zygote"
PR_SET_PDEATHSIG = 1

IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
"""Signals the zygote ignores. They reach it as process-group noise (a terminal's ^C, a
`kill -TERM -PGID` aimed at the supervisor); the zygote ends when the supervisor does instead:
multiprocessing's alive pipe reaches EOF when the supervisor closes it, PDEATHSIG when it dies.
Workers inherit these dispositions and reset them (wasmvisor.worker.main)."""


def set_parent_death_signal(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` when our parent *thread* exits
    (0 = nothing). Raises OSError when the call fails."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG, {sig}) failed")


def imported_by_forkserver() -> bool:
    """Whether the current import runs inside multiprocessing's forkserver `main` (its preload)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") in (
            "multiprocessing.forkserver",
        ):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def become_zygote() -> None:
    """Title, parent-death signal and ignored signals of the zygote process."""
    setproctitle(TITLE)
    # The parent is the supervisor thread that spawned the forkserver: WorkerLauncher keeps
    # that thread alive for as long as the zygote should live.
    set_parent_death_signal(signal.SIGKILL)
    for sig in IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


if imported_by_forkserver():
    become_zygote()
