"""The one place a process with an event loop reaps its children (the supervisor: its zygote, workers
orphaned by a dead zygote, and, as a child subreaper, whatever else is re-parented to it).

`reap` is a `waitpid(-1, WNOHANG)` loop. It hands each child's returncode to whoever `watch`es that pid
and logs and drops the others (a container process whose relay was killed with -9 ends up here). The
supervisor calls it from its event loop on SIGCHLD (`attach`: the signal only wakes the loop); the
launcher's thread calls it too, when it has seen its zygote end. Nobody else calls waitpid: a
`waitpid(pid)` beside this loop would steal statuses from it, or lose them to it. `exited` tells
whether a child has ended without collecting it.

A status reaped before its pid is watched (a zygote that died at once, before the thread that spawned
it could say so) is kept for UNCLAIMED_SECONDS and handed over when the watch comes.

`ended_children` is the waitpid loop itself, also for a single-threaded fork loop that reaps in its
own one place (the zygote's).
"""

from __future__ import annotations

import logging
import os
import threading
import time

TYPE_CHECKING = False  # typing and asyncio are not loaded by the supervisor's first steps for this module
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

UNCLAIMED_SECONDS = 5.0
"""How long the status of a child nobody watched yet is kept for a watch to come."""
UNCLAIMED_LIMIT = 64
"""At most this many such statuses are kept (the oldest go first)."""


def ended_children() -> Iterator[tuple[int, int]]:
    """Collect each child that has ended, as (pid, returncode): `waitpid(-1, WNOHANG)` until none is
    left. The returncode as Popen's: >= 0 the exit code, < 0 minus the signal that killed it."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        yield pid, os.waitstatus_to_exitcode(status)


class ChildReaper:
    """Reaps this process's children in one place and hands each status to the pid's watcher.

    Thread-safe: `reap` may run on the event loop and on another thread at once. A watcher is called
    on the thread that reaped, outside the reaper's lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[int, Callable[[int], object]] = {}
        self._unclaimed: dict[int, tuple[int, float]] = {}
        """pid -> (returncode, when reaped) of children that ended unwatched."""
        self._clock = clock

    def watch(self, pid: int, on_exit: Callable[[int], object]) -> None:
        """Call `on_exit(returncode)` when child `pid` is reaped (>= 0 its exit code, < 0 minus the
        signal that killed it); at once when it was reaped moments ago, before this call. One
        watcher a pid: a second replaces the first."""
        with self._lock:
            self._expire()
            kept = self._unclaimed.pop(pid, None)
            if kept is None:
                self._watchers[pid] = on_exit
                return
        log.debug("child %d had ended before it was watched: returncode %d", pid, kept[0])
        on_exit(kept[0])

    def unwatch(self, pid: int, on_exit: Callable[[int], object]) -> None:
        """Forget `on_exit` as the watcher of `pid` (its status came some other way, or is no longer
        wanted); nothing when another watcher has replaced it (the pid was reused)."""
        with self._lock:
            if self._watchers.get(pid) == on_exit:
                del self._watchers[pid]

    def reap(self) -> None:
        """Collect every child that has ended; its watcher gets its returncode, an unwatched one is
        logged (and kept briefly for a watch that may still come)."""
        ended: list[tuple[int, int, Callable[[int], object] | None]] = []
        with self._lock:
            for pid, returncode in ended_children():
                on_exit = self._watchers.pop(pid, None)
                if on_exit is None:
                    self._unclaimed[pid] = (returncode, self._clock())
                ended.append((pid, returncode, on_exit))
            self._expire()
        for pid, returncode, on_exit in ended:
            if on_exit is None:
                log.info("reaped process %d, which no one here waits for: returncode %d", pid, returncode)
            else:
                on_exit(returncode)

    def exited(self, pid: int) -> bool:
        """Whether child `pid` has ended: a zombie `reap` has still to collect, or collected already
        (or not a child of ours). Never collects it."""
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reap on `loop` whenever SIGCHLD arrives (the signal only wakes the loop), and now: children
        that ended before the loop ran."""
        import signal

        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def _expire(self) -> None:
        """Drop kept statuses that are too old, or too many (under the lock)."""
        too_old = self._clock() - UNCLAIMED_SECONDS
        for pid in [pid for pid, (_, at) in self._unclaimed.items() if at < too_old]:
            del self._unclaimed[pid]
        while len(self._unclaimed) > UNCLAIMED_LIMIT:
            del self._unclaimed[next(iter(self._unclaimed))]
