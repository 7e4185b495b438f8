"""The zygote's loop: fork one worker per request; report its pid and, once it is reaped, its end.

The supervisor (wasmvisor.ipc.launcher) and its zygote share one SOCK_SEQPACKET socketpair, made before
the zygote exists, so no other process can ask it for anything. A request is one message: `run TITLE`
with two fds attached (SCM_RIGHTS), the write end of a status pipe and the worker's end of its own
socketpair; or `ping` with the status pipe alone. The zygote forks; the child becomes the worker
(`run(fd)` of the worker entry module, which never returns) or, for a ping, exits 0; the zygote writes
the child's pid on the status pipe (worker_handle.STATUS) and, when it has reaped the child, its
returncode (>= 0: exit code; < 0: minus the signal) before closing it. The supervisor's WorkerHandle
reads both from the pipe's other end. EOF on the socketpair (the supervisor closed it, or died) ends
the zygote; workers forked before run on.

This replaces multiprocessing's forkserver: no pickled Process object per fork in the supervisor, and
no spawn bootstrap (unpickling, `prepare`, `_bootstrap`) in each worker.

The zygote only imports and forks: it never compiles wasm (a child forked from a process that compiled
with wasmtime's parallel compiler hangs at its own first compile).
"""

from __future__ import annotations

import gc
import importlib
import os
import select
import socket
import sys
import traceback
from collections.abc import Callable

from wasmvisor.ipc.launcher import run_preload_hooks
from wasmvisor.ipc.worker_handle import STATUS
from wasmvisor.linux import syscalls as linux
from wasmvisor.linux.wakeup import ChildWakeup

REQUEST_LIMIT = 4096
"""Bytes of one request (`run ` and a process title)."""
EX_SOFTWARE = 70


def serve(conn: socket.socket, run_worker: Callable[[int], object]) -> None:
    """Serve fork requests on `conn` until it reaches EOF. Single-threaded; SIGCHLD only wakes the
    loop, which reaps in one place."""
    wakeup = ChildWakeup()
    status_fds: dict[int, int] = {}
    fork = linux.quiet_fork if linux.single_threaded() else os.fork
    try:
        while True:
            ready, _, _ = select.select([conn.fileno(), wakeup.fd], [], [])
            if wakeup.fd in ready:
                wakeup.drain()
                _reap(status_fds)
            if conn.fileno() in ready:
                message, fds, _, _ = socket.recv_fds(conn, REQUEST_LIMIT, 2)
                if not message and not fds:
                    return  # EOF: the supervisor is gone or done
                _fork_one(conn, message, fds, status_fds, wakeup, run_worker, fork)
    finally:
        wakeup.close()
        for fd in status_fds.values():
            os.close(fd)  # workers still running: their supervisor sees EOF and reaps them itself


def _fork_one(conn: socket.socket, message: bytes, fds: list[int], status_fds: dict[int, int],
              wakeup: ChildWakeup, run_worker: Callable[[int], object], fork: Callable[[], int]) -> None:
    if not fds:
        return  # nothing to report on: not a request of ours
    status_w, worker_fd = fds[0], (fds[1] if len(fds) > 1 else -1)
    ping = message == b"ping"
    if not ping and (not message.startswith(b"run ") or worker_fd < 0):
        for fd in fds:
            os.close(fd)
        return
    pid = fork()
    if pid == 0:  # the worker: never returns into this loop
        code = EX_SOFTWARE
        try:
            wakeup.after_fork()
            for fd in (status_w, *status_fds.values()):
                os.close(fd)
            conn.close()
            if ping:
                code = 0
            else:
                run_worker(worker_fd)
        except BaseException:  # noqa: B036 - nothing may escape into the zygote's loop
            traceback.print_exc()
        finally:
            os._exit(code)
    if worker_fd >= 0:
        os.close(worker_fd)
    try:
        os.write(status_w, STATUS.pack(pid))
    except OSError:
        pass  # the supervisor gave up on this request; the child is still reaped below
    status_fds[pid] = status_w


def _reap(status_fds: dict[int, int]) -> None:
    """Collect every ended child and write its returncode on its status pipe."""
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        fd = status_fds.pop(pid, None)
        if fd is None:
            continue
        try:
            os.write(fd, STATUS.pack(os.waitstatus_to_exitcode(wait_status)))
        except OSError:
            pass
        os.close(fd)


def entry_runner(entry: str) -> Callable[[int], object]:
    """The `run(fd)` function of the worker entry module `entry` (imported by now)."""
    run: Callable[[int], object] = importlib.import_module(entry).run
    return run


def run_zygote(conn_fd: int, entry: str) -> None:
    """Become the zygote (title, parent-death signal, ignored signals), freeze the heap so that
    workers share it, and serve fork requests on `conn_fd` until EOF; the preload is imported by
    now. Both kinds of zygote end here: a fork of the supervisor (launcher.fork_zygote) and a new
    interpreter (`main`)."""
    from wasmvisor.worker import zygote

    zygote.become_zygote()
    runner = entry_runner(entry)
    gc.freeze()  # after the preload: the collector in a worker never copies these pages
    serve(socket.socket(fileno=conn_fd), runner)


def main(argv: list[str] | None = None) -> None:
    """A zygote spawned as a new interpreter: `... CONN_FD ENTRY PRELOAD...`. Imports the preload
    and runs the zygote. Ends the process."""
    args = sys.argv[1:] if argv is None else argv
    code = 0
    try:
        run_preload_hooks([importlib.import_module(name) for name in args[2:]])
        run_zygote(int(args[0]), args[1])
    except BaseException:  # noqa: B036
        code = EX_SOFTWARE
        traceback.print_exc()
    finally:
        os._exit(code)


if __name__ == "__main__":
    main()
