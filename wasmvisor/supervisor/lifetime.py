"""When a supervisor ends: while it holds tasks or has promised to stay for one (a claim), it serves;
after containerd's Shutdown with neither left, it lingers a moment, then ends.

A `start` may hand containerd the address of a running supervisor only with that supervisor's
promise to stay until the task's Create (shim/claim.py): without it, a supervisor in its linger could
end between `start`'s answer and containerd's connect or Create (`ttrpc: closed`, `dial unix ...: no
such file or directory`). A claim counts until that task's Create arrives (the task then counts
itself), or containerd's Shutdown for it, or until CLAIM_SECONDS pass without either (containerd
never came). Once the supervisor decides to end, it first refuses claims and removes its socket
file, both in that one step: a `start` that was refused, or that finds no file, binds the address
afresh and launches a new supervisor, and never hears from this one again.

The linger keeps the supervisor for the next task of a quick series (`ctr run --rm` in a loop, the
next container of a pod), which then costs a claim instead of a new supervisor and zygote. It is
counted from the last moment the supervisor became idle, so a Shutdown's linger never ends a
supervisor that a later claim has since kept.
"""

from __future__ import annotations

import logging

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

LINGER_SECONDS = 1.0
"""How long an idle supervisor waits after Shutdown before it ends (a claim keeps it)."""
CLAIM_SECONDS = 30.0
"""How long a claim keeps the supervisor without the Shutdown for its task (containerd gave up)."""


class Lifetime:
    """The supervisor's tasks, claims and linger; `end` runs once, when the supervisor is to end.

    `tasks()` counts the tasks held (those being created included). `release()` removes the socket
    file; `end()` makes the supervisor stop serving. `call_later(delay, callback)` schedules on the
    supervisor's loop.
    """

    def __init__(self, tasks: Callable[[], int], *, release: Callable[[], object], end: Callable[[], object],
                 call_later: Callable[[float, Callable[[], None]], object],
                 linger: float = LINGER_SECONDS, claim_seconds: float = CLAIM_SECONDS) -> None:
        self._tasks = tasks
        self._release = release
        self._end = end
        self._call_later = call_later
        self.linger = linger
        self.claim_seconds = claim_seconds
        self._claims: dict[str, int] = {}
        """Task id -> the number of the claim that holds it (a later claim for the id replaces it)."""
        self._events = 0
        """Numbers claims and lingers: a timer whose number is no longer current does nothing."""
        self._linger = 0
        self.ending = False

    @property
    def claims(self) -> list[str]:
        """The task ids of the claims outstanding."""
        return sorted(self._claims)

    def idle(self) -> bool:
        return not self._claims and self._tasks() == 0

    def claim(self, task_id: str) -> bool:
        """A `start` for `task_id` asks the supervisor to stay for its Create: True (it stays until that
        Create, the task's Shutdown or CLAIM_SECONDS), or False when the supervisor is ending."""
        if self.ending:
            log.info("claim for task %s refused: the supervisor is ending", task_id)
            return False
        number = self._next()
        self._claims[task_id] = number
        self._linger = 0  # no longer idle: a linger counting now ends nothing
        log.debug("claim for task %s granted (%d outstanding)", task_id, len(self._claims))
        self._call_later(self.claim_seconds, lambda: self._expire(task_id, number))
        return True

    def arrived(self, task_id: str) -> None:
        """The Create of `task_id` has come: its claim is settled (the registry counts the task from
        now on, in the same step of the loop). Nothing ends here: a failed Create is followed by
        containerd's Delete and Shutdown."""
        self._claims.pop(task_id, None)

    def shutdown(self, task_id: str) -> None:
        """containerd's Shutdown after `task_id` (its claim, if its Create never came, is settled). Idle
        now, the supervisor lingers."""
        self._claims.pop(task_id, None)
        if self.ending:
            return
        tasks = self._tasks()
        if tasks or self._claims:
            log.debug("shutdown for %s ignored: %d task(s) and %d claim(s) remain", task_id, tasks, len(self._claims))
            return
        log.info("shutdown requested and no task remains: exiting in %.1f s unless a task is claimed", self.linger)
        self._linger_if_idle()

    def released(self, task_id: str) -> None:
        """containerd ran the binary's `delete` for `task_id` (claim.py's Release): it holds nothing of
        that task any more, and sends no Create or Shutdown for it. containerd 2.1 does so after the
        first call of a group failed (`cleaning up dead shim`), when the supervisor holds only the
        claim `start` made: settled here as a Shutdown settles it, so that supervisor lingers and ends
        instead of waiting CLAIM_SECONDS for a Create that never comes."""
        log.debug("containerd ran delete for task %s", task_id)
        self.shutdown(task_id)

    def end(self) -> None:
        """End now (also on SIGTERM): refuse claims and remove the socket file, then stop. Idempotent."""
        if self.ending:
            return
        self.ending = True
        self._claims.clear()
        self._release()
        self._end()

    def _next(self) -> int:
        self._events += 1
        return self._events

    def _expire(self, task_id: str, number: int) -> None:
        if self._claims.get(task_id) != number:
            return  # settled by its Shutdown, or claimed again since
        del self._claims[task_id]
        log.info("claim for task %s expired after %.0f s without its Shutdown", task_id, self.claim_seconds)
        self._linger_if_idle()

    def _linger_if_idle(self) -> None:
        if self.ending or not self.idle():
            return
        number = self._linger = self._next()
        self._call_later(self.linger, lambda: self._linger_over(number))

    def _linger_over(self, number: int) -> None:
        if number != self._linger or self.ending:
            return
        if self.idle():
            log.info("no task arrived during the linger: exiting")
            self.end()
        else:
            log.info("a task arrived after shutdown was requested: staying")
