"""The SIGCHLD wake-up of a single-threaded fork loop (the node's template, a zygote).

The signal handler does nothing; Python writes the signal's number on the wake-up pipe, which the loop
selects on beside its sockets, and the loop then reaps, in one place. A child forked by the loop calls
`after_fork` before anything else, so that it neither keeps the pipe nor wakes its parent's loop.
"""

from __future__ import annotations

import os
import signal


class ChildWakeup:
    """A wake-up pipe for SIGCHLD (and any other signal with a handler) while it is installed."""

    def __init__(self) -> None:
        self.fd, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous = signal.set_wakeup_fd(self._write)
        signal.signal(signal.SIGCHLD, _wake_only)

    def drain(self) -> None:
        """Empty the pipe (call it when `fd` is readable, then reap)."""
        try:
            while os.read(self.fd, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Put the previous wake-up fd back and close the pipe."""
        signal.set_wakeup_fd(self._previous)
        os.close(self.fd)
        os.close(self._write)

    def after_fork(self) -> None:
        """In a child of the loop: SIGCHLD back to its default, no wake-up fd, the pipe closed."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.close(self.fd)
        os.close(self._write)


def _wake_only(signo: int, frame: object) -> None:
    """SIGCHLD's handler: the wake-up fd carries the signal to the loop."""
