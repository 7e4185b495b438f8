"""The process plumbing around fork: the one epilogue of a forked child (`run_child`, which always
ends in `os._exit`), `close_fds_except` for what a child inherited, and `quiet_fork`, a fork
without Python's at-fork work for the single-threaded zygote and worker.

Cheap to import (`os` and `sys`): the supervisor imports it before the zygote's spawn, and ctypes
only loads with the first `quiet_fork`.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing stays unloaded where this is imported early
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

EX_SOFTWARE = 70
"""A child's exit status when its body raised (sysexits.h: internal software error)."""
MAX_FD = 1 << 30
"""Above any fd a process can have (the kernel's nr_open is at most 2**30 - 64)."""
QUIET_FORK_CHECKED = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)
"""`quiet_fork` skips PyOS_AfterFork_Child, which was read for CPython 3.11 only (see quiet_fork);
any other interpreter forks with os.fork."""


def run_child(body: Callable[[], int], on_error: Callable[[BaseException], object] | None = None) -> NoReturn:
    """The end of a forked child: run `body` and exit with the status it returns; never returns into
    the parent's code, whatever happens.

    SystemExit ends the child as it would end Python (its code; None is 0, anything else not an
    int is printed and 1). Any other exception goes to `on_error` (by default its traceback to
    stderr) and the child exits EX_SOFTWARE. The status is taken modulo 256, as exit(2) does."""
    code = EX_SOFTWARE
    try:
        code = body()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException as exc:  # noqa: B036 - nothing may return into the parent's code
        if on_error is None:
            import traceback

            traceback.print_exc()
        else:
            on_error(exc)
    finally:
        os._exit(code & 0xFF)


def close_fds_except(keep: Sequence[int]) -> None:
    """Close every fd of this process but 0, 1, 2 and `keep` (after a fork: the parent's sockets
    must not stay open in a child that outlives their use)."""
    low = 3
    for fd in sorted({fd for fd in keep if fd >= 3}):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, MAX_FD)  # close_range(2): no listing of /proc/self/fd


def single_threaded() -> bool:
    """True when the calling process has one thread (only then may `quiet_fork` skip Python's
    after-fork work)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def quiet_fork() -> int:
    """fork(2) without the work Python does around `os.fork`, in a single-threaded process on
    CPython 3.11; `os.fork()` otherwise. Returns 0 in the child, the child's pid in the parent.

    Why: Python 3.11 writes to every object and code object it runs (reference counts, the adaptive
    interpreter's counters), so the at-fork hooks (threading's, logging's, random's) that os.fork
    runs in the child copy ~0.55 MB of pages the child shares with its parent (measured with
    /proc/PID/smaps_rollup: Private_Dirty ~850 KB -> ~290 KB right after the fork of a zygote).

    What is skipped (3.11's os.fork: PyOS_BeforeFork, PyOS_AfterFork_Parent/_Child) and why it has
    nothing to do in a process with one thread, which is also the thread that forks:
    - the import lock taken around the fork and re-created in the child: no other thread can hold
      it (nor can this one: nothing here forks while importing);
    - _PyGILState_Reinit, _PyEval_ReInitThreads, _PyRuntimeState_ReInitThreads: a new TSS key,
      GIL, pending-calls lock and runtime locks, and the removal of other threads' states. ctypes
      releases the GIL around fork(2) and re-takes it after, no other thread held any lock, and the
      forking thread keeps its pthread identity and TSS values in the child, so the old ones are
      valid. The tstate's native_thread_id stays the parent's; 3.11 reads it nowhere.
    - _PySignal_AfterFork: forgets signals caught but not yet handled by Python. A SIGCHLD caught
      by the zygote just before a fork may then also run its handler in the child, which does
      nothing (wasmvisor.linux.wakeup), or, once the child has reset SIGCHLD, print one "Signal 17
      ignored" line to stderr; the worker's own fork (pid namespace) has no Python handler left;
    - _PyInterpreterState_DeleteExceptMain: there are no subinterpreters;
    - the at-fork hooks: threading's and logging's re-create locks no other thread can hold,
      concurrent.futures' likewise; random's reseeding is done here (a child must not repeat its
      parent's sequence).
    C-level pthread_atfork handlers run as with os.fork: both call glibc's fork()."""
    if not QUIET_FORK_CHECKED or not single_threaded():
        return os.fork()
    from wasmvisor.linux import syscalls

    pid = syscalls.fork()
    if pid == 0:
        random = sys.modules.get("random")
        if random is not None:
            random.seed()
    return pid
