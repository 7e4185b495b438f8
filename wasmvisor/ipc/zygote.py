"""The zygote's fork protocol, both halves: the supervisor's `WorkerLauncher` (client) and the zygote's
loop (`serve`, server), as CPython's multiprocessing/forkserver.py keeps its own.

The zygote (`wasmvisor-zygote`) has wasmtime and the worker code imported and forks a worker per request
in about a millisecond. It is either a fork of the supervisor itself (`fork_zygote`: a supervisor forked
from the node's template has all of it imported already) or a new interpreter that runs `main`
(`begin_warm_up`). Either way it ends in `run_zygote`.

The protocol: supervisor and zygote share one SOCK_SEQPACKET socketpair, made before the zygote exists,
so no other process can reach the zygote. A request is one message: `run` with two fds attached
(SCM_RIGHTS), the write end of a status pipe and the worker's end of its own socketpair; or `ping` with
the status pipe alone. The zygote forks; the child becomes the worker (`run(fd)` of the worker entry
module, which never returns) or, for a ping, exits 0. The zygote writes the child's pid on the status
pipe (STATUS) and, when it has reaped the child, its returncode (>= 0: exit code; < 0: minus the
signal) before closing it; the supervisor reads both from the pipe's other end (`read_status`, and
WorkerHandle for a worker's end). EOF on the socketpair (the supervisor closed it, or died) ends the
zygote; workers forked before run on. The worker names itself (its process title) once configured.

This replaces multiprocessing's forkserver: no pickled Process object per fork in the supervisor, and
no spawn bootstrap (unpickling, `prepare`, `_bootstrap`) in each worker. The zygote only imports and
forks: it never compiles wasm (a child forked from a process that compiled with wasmtime's parallel
compiler hangs at its own first compile).

The supervisor imports this module before it starts the zygote: it imports neither wasmtime nor
worker code (it names them as strings), and nothing slow at its top (ctypes, typing, asyncio,
concurrent.futures are imported where they are used). All blocking zygote calls run on one
launcher-owned thread: a spawned zygote sets PR_SET_PDEATHSIG, which fires when the *thread* that
spawned it ends, so that thread must live as long as the launcher. The zygote is the supervisor's
child: its end is collected by the supervisor's one reaper (wasmvisor.linux.reaper), never by a
waitpid of the launcher's own.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType

from wasmvisor.errors import Unavailable
from wasmvisor.linux.fork import EX_SOFTWARE, close_fds_except, quiet_fork, run_child
from wasmvisor.linux.reaper import ChildReaper, ended_children
from wasmvisor.linux.wakeup import ChildWakeup

__all__ = ["STATUS", "WorkerLauncher", "main", "preload_for", "read_status",
           "run_preload_hooks", "run_zygote", "serve"]

TYPE_CHECKING = False  # typing and concurrent.futures are not loaded in the zygote for this module
if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

    from wasmvisor.ipc import messages
    from wasmvisor.ipc.worker_handle import WorkerHandle

# asyncio and the message codec (~60 ms of imports) are imported where they are used: the supervisor
# starts the zygote before it loads them (supervisor/daemon_setup.py), so that both overlap.

log = logging.getLogger(__name__)
ZYGOTE_MODULE = "wasmvisor.worker.zygote"
WORKER_ENTRY = "wasmvisor.worker.main"
DEFAULT_PRELOAD = ("wasmtime", "wasmvisor.engines.wasmtime_engine", WORKER_ENTRY)
"""Modules the zygote imports once. The engine module only imports wasmtime (it compiles
nothing at import), and saves each worker ~4 ms."""
SERVER_MODULE = __name__
"""This module: a spawned zygote runs its `main`."""
SPAWN_FLAGS = ("-I", "-S")
"""A spawned zygote's interpreter: no `site` nor PYTHON* variables; it gets the supervisor's sys.path."""

RUN = b"run"
"""A request for a worker (fds: the status pipe, the worker's socket)."""
PING = b"ping"
"""A request for a child that exits at once (fd: the status pipe): the zygote is serving."""
REQUEST_LIMIT = 4096
"""Bytes of one request the zygote reads."""
STATUS = struct.Struct("q")
"""A status pipe's numbers: the child's pid, then its returncode."""


def read_status(fd: int) -> int:
    """One 8-byte signed number from a status pipe (a pid, then a returncode); EOFError at EOF."""
    data = b""
    while len(data) < STATUS.size:
        chunk = os.read(fd, STATUS.size - len(data))
        if not chunk:
            raise EOFError("zygote closed the status pipe")
        data += chunk
    return int(STATUS.unpack(data)[0])


def preload_for(engine: str) -> tuple[str, ...]:
    """The zygote's preload for the engine named `engine` ("module:Class")."""
    return ("wasmtime", WORKER_ENTRY, engine.split(":", 1)[0])


def run_preload_hooks(modules: list[ModuleType]) -> None:
    """Call `zygote_preload()` of each module that has one (an engine's shared state, made once
    before any worker is forked: wasmtime_engine.zygote_preload)."""
    for module in modules:
        hook = getattr(module, "zygote_preload", None)
        if callable(hook):
            hook()


# -- the client half: the supervisor's ---------------------------------------------------------


class WorkerLauncher:
    """Starts the zygote and forks workers from it. One per supervisor.

    `reaper`: the supervisor's one reaper (the composition root attaches it to the event loop); the
    zygote, and workers it leaves behind when it dies, are collected there."""

    def __init__(
        self,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        entry: str = WORKER_ENTRY,
        reaper: ChildReaper | None = None,
    ) -> None:
        self._preload = [ZYGOTE_MODULE, *(m for m in preload if m != ZYGOTE_MODULE)]
        self._entry = entry
        self.reaper = reaper if reaper is not None else ChildReaper()
        from concurrent.futures import ThreadPoolExecutor  # the zygote imports this module, not the class

        self._executor = ThreadPoolExecutor(1, thread_name_prefix="wasmvisor-zygote")
        self._conn: socket.socket | None = None
        self._zygote: int | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._warming: concurrent.futures.Future[float] | None = None

    @property
    def zygote_pid(self) -> int | None:
        """The zygote's pid, once started."""
        return self._zygote

    def warm_up(self) -> float:
        """Start the zygote and wait until its preload is done; returns the seconds it took.

        Blocking: the supervisor calls it in a thread at startup so it overlaps the first Create.
        After `begin_warm_up` or `fork_zygote`, it waits for that zygote rather than making another.
        """
        return self.begin_warm_up().result()

    def begin_warm_up(self, wait_spawned: float = 0.0) -> concurrent.futures.Future[float]:
        """Start the zygote on the launcher's thread and return at once (once only).

        With `wait_spawned` > 0, first wait up to that many seconds until the zygote's process
        exists (not until its preload is done): the caller's own imports then run while the
        zygote preloads on another core instead of competing with the launcher's thread for the
        GIL. Spawns queued behind it (`spawn`) run when the zygote answers.
        """
        with self._lock:
            if self._warming is None:
                spawned = threading.Event()
                self._warming = self._executor.submit(self._warm_up, spawned)
            else:
                return self._warming
        if wait_spawned > 0:
            spawned.wait(wait_spawned)
        return self._warming

    def fork_zygote(self) -> int:
        """Make the zygote by forking this process, which has the zygote's preload imported already
        (a supervisor forked from the node's template: supervisor/shim/template_server.py). About a millisecond
        instead of a new interpreter's ~150 ms. Call it on the main thread before any other thread
        starts: the zygote's parent-death signal follows the forking thread, and a fork from a
        threaded process copies locks that other threads may hold. Returns the zygote's pid.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the zygote: never returns
            ours.detach()  # closed with the rest below; the object must not close a reused fd
            _zygote_after_fork(theirs.detach(), self._entry)
        theirs.close()
        self._watch_zygote(pid)
        with self._lock:
            self._conn, self._zygote = ours, pid
            if self._warming is None:
                # No ping: this zygote has its preload already, and a ping (a fork and an exit of a
                # ~35 MB process, waited for on the launcher's thread) would delay the first worker.
                from concurrent.futures import Future

                ready: concurrent.futures.Future[float] = Future()
                ready.set_result(0.0)
                self._warming = ready
        return pid

    async def spawn(self, config: messages.Configure) -> WorkerHandle:
        """Fork a worker and send it `config` as its first line, at once: whatever the caller does
        with the new pid (the supervisor joins it to its task's cgroup) overlaps the worker's set-up."""
        import asyncio

        from wasmvisor.ipc.channel import AsyncChannel
        from wasmvisor.ipc.worker_handle import WorkerHandle

        loop = asyncio.get_running_loop()
        began = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid, sentinel, pidfd = await loop.run_in_executor(self._executor, self._fork, theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            channel = await AsyncChannel.open(ours, f"worker {pid}")
        except BaseException:
            ours.close()
            os.close(sentinel)
            raise
        handle = WorkerHandle(pid, sentinel, pidfd, channel, self.reaper, STATUS,
                              launcher_closed=lambda: self._closing)
        try:
            await handle.send(config)
        except BaseException:
            handle.kill(signal.SIGKILL)
            handle.close()
            raise
        log.debug("worker %d of %s forked and configured in %.1f ms", pid, config.id,
                  (time.monotonic() - began) * 1000)
        return handle

    async def keep_zygote(self) -> None:
        """Restart the zygote whenever it dies; workers forked before keep running (their ends
        are then collected by the reaper). Returns when the launcher closes."""
        import asyncio

        loop = asyncio.get_running_loop()
        while not self._closing:
            pid = self.zygote_pid
            if pid is None:
                return
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                pidfd = -1  # reaped already: restart at once
            if pidfd >= 0:
                ended: asyncio.Future[None] = loop.create_future()
                loop.add_reader(pidfd, _resolve_once, ended)
                try:
                    await ended
                finally:
                    loop.remove_reader(pidfd)
                    os.close(pidfd)
            if self._closing or self.zygote_pid != pid:
                continue
            log.warning("zygote %d died; starting a new one", pid)
            try:
                seconds = await loop.run_in_executor(self._executor, self._restart, pid)
            except Exception as exc:
                log.error("zygote restart failed: %s; trying again on the next spawn", exc)
                return
            log.info("zygote %s restarted in %.3f s", self.zygote_pid, seconds)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the zygote (workers keep running) and the launcher's thread."""
        self._closing = True
        try:
            self._executor.submit(self._stop, timeout).result()
        finally:
            self._executor.shutdown(wait=True)

    def _watch_zygote(self, pid: int) -> None:
        """The reaper hands the zygote's end to us (else it would log it as a stranger's)."""
        self.reaper.watch(pid, lambda returncode: log.debug("zygote %d reaped: returncode %d", pid, returncode))

    # -- on the launcher's thread ---------------------------------------------------------

    def _warm_up(self, spawned: threading.Event | None = None) -> float:
        began = time.monotonic()
        try:
            self._spawn_zygote()
        finally:
            if spawned is not None:
                spawned.set()
        self._ping_zygote()
        return time.monotonic() - began

    def _zygote_alive(self) -> bool:
        """Whether the zygote (our child) still runs (the reaper collects it once it has ended)."""
        return self._zygote is not None and not self.reaper.exited(self._zygote)

    def _restart(self, dead: int | None) -> float:
        """A new zygote for the one that died (`dead`), as a new interpreter; nothing when a live one
        has replaced it already (a spawn found it dead before keep_zygote did)."""
        if dead is not None and self._zygote not in (None, dead) and self._zygote_alive():
            return 0.0
        if dead is not None:
            self.reaper.reap()  # collects the dead one, if SIGCHLD has not had the loop do it yet
        if self._conn is not None:
            self._conn.close()
            self._conn, self._zygote = None, None
        return self._warm_up()

    def _spawn_zygote(self) -> None:
        """A new interpreter running the zygote's loop (`main` of this module)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            fd = theirs.fileno()
            code = f"import sys; sys.path[:] = {sys.path!r}; from {SERVER_MODULE} import main; main()"
            argv = [sys.executable, *SPAWN_FLAGS, "-c", code, str(fd), self._entry, *self._preload]
            os.set_inheritable(fd, True)
            pid = os.posix_spawn(sys.executable, argv, os.environ)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._watch_zygote(pid)  # one that died already is handed over: the reaper keeps its status a while
        self._conn, self._zygote = ours, pid

    def _ping_zygote(self) -> float:
        """Fork a child that exits at once and wait for its end: the zygote is serving."""
        began = time.monotonic()
        pid, sentinel, pidfd = self._fork(None)
        try:
            read_status(sentinel)
        except EOFError as exc:
            raise Unavailable(f"zygote: no answer to a ping: {exc}") from None
        finally:
            os.close(sentinel)
            if pidfd >= 0:
                os.close(pidfd)
        return time.monotonic() - began

    def _fork(self, sock: socket.socket | None) -> tuple[int, int, int]:
        """Ask the zygote for a worker on `sock`, or a ping without a socket.
        Returns (pid, status pipe's read end: the sentinel, pidfd or -1)."""
        if self._conn is None or not self._zygote_alive():
            self._restart(self._zygote)  # never started, or died (keep_zygote may not have seen it yet)
        assert self._conn is not None
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        fds = [status_w] if sock is None else [status_w, sock.fileno()]
        try:
            socket.send_fds(self._conn, [PING if sock is None else RUN], fds)
        except OSError as exc:
            os.close(status_r)
            raise Unavailable(f"zygote: cannot reach it: {exc}") from None
        finally:
            os.close(status_w)
        try:
            pid = read_status(status_r)
        except (OSError, EOFError) as exc:
            os.close(status_r)
            raise Unavailable(f"zygote: no child from it: {exc}") from None
        try:
            pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            pidfd = -1  # already gone (its exit is in the sentinel), or no pidfd support
        return pid, status_r, pidfd

    def _stop(self, timeout: float) -> None:
        pid, conn = self._zygote, self._conn
        self._zygote, self._conn = None, None
        if pid is None or conn is None:
            return
        conn.close()  # EOF on its socketpair: the zygote exits
        deadline = time.monotonic() + timeout
        killed = False
        while not self.reaper.exited(pid):
            if not killed and time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                killed = True
            time.sleep(0.005)
        self.reaper.reap()


def _resolve_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _zygote_after_fork(conn_fd: int, entry: str) -> None:
    """The forked zygote's life: become the zygote, then serve fork requests on `conn_fd`. Ends the
    process; never returns into the supervisor's code."""
    def become() -> int:
        # The supervisor's listening socket and log pipes must not stay open here (nor, through
        # here, in workers): a supervisor that died would still seem to serve.
        close_fds_except((conn_fd,))
        run_zygote(conn_fd, entry)
        return 0

    run_child(become)


# -- the server half: the zygote's -------------------------------------------------------------


def serve(conn: socket.socket, run_worker: Callable[[int], object]) -> None:
    """Serve fork requests on `conn` until it reaches EOF. Single-threaded; SIGCHLD only wakes the
    loop, which reaps in one place."""
    wakeup = ChildWakeup()
    status_fds: dict[int, int] = {}
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
                _fork_one(conn, message, fds, status_fds, wakeup, run_worker)
    finally:
        wakeup.close()
        for fd in status_fds.values():
            os.close(fd)  # workers still running: their supervisor sees EOF and reaps them itself


def _fork_one(conn: socket.socket, message: bytes, fds: list[int], status_fds: dict[int, int],
              wakeup: ChildWakeup, run_worker: Callable[[int], object]) -> None:
    if not fds:
        return  # nothing to report on: not a request of ours
    status_w, worker_fd = fds[0], (fds[1] if len(fds) > 1 else -1)
    ping = message == PING
    if not ping and (message != RUN or worker_fd < 0):
        for fd in fds:
            os.close(fd)
        return
    pid = quiet_fork()  # os.fork where quiet_fork is not safe (linux/fork.py)
    if pid == 0:  # the worker: never returns into this loop

        def child() -> int:
            wakeup.after_fork()
            for fd in (status_w, *status_fds.values()):
                os.close(fd)
            conn.close()
            if ping:
                return 0
            run_worker(worker_fd)  # the worker's `run` ends the process itself
            return EX_SOFTWARE

        run_child(child)
    if worker_fd >= 0:
        os.close(worker_fd)
    try:
        os.write(status_w, STATUS.pack(pid))
    except OSError:
        pass  # the supervisor gave up on this request; the child is still reaped below
    status_fds[pid] = status_w


def _reap(status_fds: dict[int, int]) -> None:
    """Collect every ended child and write its returncode on its status pipe."""
    for pid, returncode in ended_children():
        fd = status_fds.pop(pid, None)
        if fd is None:
            continue
        try:
            os.write(fd, STATUS.pack(returncode))
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
    now. Both kinds of zygote end here: a fork of the supervisor (WorkerLauncher.fork_zygote) and a
    new interpreter (`main`)."""
    zygote = importlib.import_module(ZYGOTE_MODULE)  # the worker side's: named, never imported by the supervisor

    zygote.become_zygote()
    runner = entry_runner(entry)
    gc.freeze()  # after the preload: the collector in a worker never copies these pages
    serve(socket.socket(fileno=conn_fd), runner)


def main(argv: list[str] | None = None) -> None:
    """A zygote spawned as a new interpreter: `... CONN_FD ENTRY PRELOAD...`. Imports the preload
    and runs the zygote. Ends the process."""
    args = sys.argv[1:] if argv is None else argv

    def zygote() -> int:
        run_preload_hooks([importlib.import_module(name) for name in args[2:]])
        run_zygote(int(args[0]), args[1])
        return 0

    run_child(zygote)


if __name__ == "__main__":
    main()
