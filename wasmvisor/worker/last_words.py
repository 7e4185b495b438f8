"""What a wasm worker has to say once its log FIFO is closed (worker/confine.py closes it before the
guest runs): its warnings, kept by `LastWords` for `Exited.note` (the supervisor logs them and makes
the container's termination message of them: supervisor/tasks/termination.py); and the time limit's
backstop, which reports on its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from wasmvisor.engines.base import TRAP_EXIT_CODE
from wasmvisor.ipc.channel import Channel
from wasmvisor.ipc.messages import Exited

HARD_STOP_GRACE_S = 1.0
"""How long past its time limit a guest stuck in a host call may take before its worker ends it."""
NOTE_LIMIT = 2000
"""Bytes of last words at most (the kubelet keeps 4096 of a termination message)."""


class LastWords(logging.Handler):
    """The worker's log while the guest runs (its FIFO closed, for a confined guest): warnings and errors
    kept, one line each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage().replace("\n", " "))

    def text(self) -> str:
        return "; ".join(self.lines)[:NOTE_LIMIT]


def hard_stop_after(channel: Channel, seconds: float, source: str) -> None:
    """The time limit's backstop: epoch interruption (the engine's) stops a guest running wasm, not one
    waiting in a host call (a read of an idle stdin); HARD_STOP_GRACE_S after its limit, such a guest's
    worker reports its end and exits."""

    def stop() -> None:
        note = (f"guest {source}: time limit of {seconds:g}s passed while it waited in a host call: "
                f"ended with {TRAP_EXIT_CODE}")
        channel.send(Exited(code=TRAP_EXIT_CODE, at_ns=time.time_ns(), note=note))
        os._exit(TRAP_EXIT_CODE)

    timer = threading.Timer(seconds + HARD_STOP_GRACE_S, stop)
    timer.daemon = True
    timer.start()
