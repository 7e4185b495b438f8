"""The zygote's identity: `become_zygote` names the process `wasmvisor-zygote`, ties its life to the
supervisor and shields it from signals meant for others (the zygote's loop is wasmvisor/ipc/zygote.py).

The zygote only imports: it must never compile wasm (a child forked from a process that
compiled with wasmtime's parallel compiler hangs at its own first compile).
"""

from __future__ import annotations

import signal

from setproctitle import setproctitle

from wasmvisor.linux.syscalls import set_parent_death_signal

TITLE = "wasmvisor-zygote"

IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
"""Signals the zygote ignores. They reach it as process-group noise (a terminal's ^C, a
`kill -TERM -PGID` aimed at the supervisor); the zygote ends when the supervisor does instead:
its socketpair reaches EOF when the supervisor closes it, PDEATHSIG when it dies.
Workers inherit these dispositions and reset them (wasmvisor.worker.main)."""


def become_zygote() -> None:
    """Title, parent-death signal and ignored signals of the zygote process."""
    setproctitle(TITLE)
    # The parent is the supervisor thread that spawned or forked the zygote: WorkerLauncher keeps
    # that thread alive for as long as the zygote should live.
    set_parent_death_signal(signal.SIGKILL)
    for sig in IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
