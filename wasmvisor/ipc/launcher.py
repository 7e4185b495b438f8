"""The supervisor's side of the zygote: fork workers from it and talk to each one over its own
socketpair.

The zygote (`wasmvisor-zygote`, wasmvisor/worker/forkserver.py) has wasmtime and the worker code
imported and forks a worker per request in about a millisecond. It is either a fork of the supervisor
itself (`fork_zygote`: a supervisor forked from the node's template has all of it imported already) or
a new interpreter that imports it (`begin_warm_up`). The two talk over one SOCK_SEQPACKET socketpair:
no socket file, and no other process can reach the zygote. This module is imported by the supervisor:
it imports neither wasmtime nor worker code (it names them as strings).

All blocking zygote calls run on one launcher-owned thread: a spawned zygote sets PR_SET_PDEATHSIG,
which fires when the *thread* that spawned it ends, so that thread must live as long as the launcher.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

from wasmvisor.errors import Unavailable
from wasmvisor.ipc.worker_handle import LINE_LIMIT, ZYGOTE_LOST, WorkerHandle, read_status

__all__ = ["LINE_LIMIT", "ZYGOTE_LOST", "WorkerHandle", "WorkerLauncher", "close_fds_except", "preload_for",
           "run_preload_hooks"]

TYPE_CHECKING = False  # typing and concurrent.futures are not loaded in the zygote for this module
if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

    from wasmvisor.ipc import messages

# asyncio and the message codec (~60 ms of imports) are imported where they are used: the supervisor
# starts the zygote before it loads them (supervisor/daemon_setup.py), so that both overlap.

log = logging.getLogger(__name__)
ZYGOTE_MODULE = "wasmvisor.worker.zygote"
WORKER_ENTRY = "wasmvisor.worker.main"
DEFAULT_PRELOAD = ("wasmtime", "wasmvisor.engines.wasmtime_engine", WORKER_ENTRY)
"""Modules the zygote imports once. The engine module only imports wasmtime (it compiles
nothing at import), and saves each worker ~4 ms."""


FORKSERVER_MODULE = "wasmvisor.worker.forkserver"
"""The zygote's loop; a spawned zygote runs its `main`."""
SPAWN_FLAGS = ("-I", "-S")
"""A spawned zygote's interpreter: no `site` nor PYTHON* variables; it gets the supervisor's sys.path."""


def preload_for(engine: str) -> tuple[str, ...]:
    """The zygote's preload for the engine named `engine` ("module:Class")."""
    return ("wasmtime", WORKER_ENTRY, engine.split(":", 1)[0])


class WorkerLauncher:
    """Starts the zygote and forks workers from it. One per supervisor."""

    def __init__(
        self,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        entry: str = WORKER_ENTRY,
    ) -> None:
        self._preload = [ZYGOTE_MODULE, *(m for m in preload if m != ZYGOTE_MODULE)]
        self._entry = entry
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
        with self._lock:
            self._conn, self._zygote = ours, pid
            if self._warming is None:
                self._warming = self._executor.submit(self._ping_zygote)
        return pid

    async def spawn(self, config: messages.Configure,
                    on_forked: Callable[[int], None] | None = None) -> WorkerHandle:
        """Fork a worker and send it `config` as its first line.

        `on_forked(pid)` runs before that line is sent, while the worker still waits for it (the
        supervisor puts it in its cgroup there, so all it loads is accounted); if it raises, the
        worker is killed and the error propagates."""
        import asyncio

        loop = asyncio.get_running_loop()
        began = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            name = f"wasmvisor-worker {config.namespace}/{config.id}"
            pid, sentinel, pidfd = await loop.run_in_executor(self._executor, self._fork, theirs, name)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=LINE_LIMIT)
        except BaseException:
            ours.close()
            os.close(sentinel)
            raise
        handle = WorkerHandle(pid, sentinel, pidfd, reader, writer, launcher_closed=lambda: self._closing)
        forked = time.monotonic()
        if on_forked is not None:
            try:
                on_forked(pid)
            except BaseException:
                handle.kill(signal.SIGKILL)
                handle.close()
                raise
        await handle.send(config)
        log.debug("worker %d of %s forked in %.1f ms, configured %.1f ms later", pid, config.id,
                  (forked - began) * 1000, (time.monotonic() - forked) * 1000)
        return handle

    async def keep_zygote(self) -> None:
        """Restart the zygote whenever it dies; workers forked before keep running (their ends
        are then collected by WorkerHandle itself). Returns when the launcher closes."""
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
        """Whether the zygote (our child) still runs; a dead one is reaped here."""
        if self._zygote is None:
            return False
        try:
            done, _ = os.waitpid(self._zygote, os.WNOHANG)
        except ChildProcessError:
            return False
        return not done

    def _restart(self, dead: int | None) -> float:
        """A new zygote for the one that died (`dead`, reaped here), as a new interpreter; nothing
        when a live one has replaced it already (a spawn found it dead before keep_zygote did)."""
        if dead is not None and self._zygote not in (None, dead) and self._zygote_alive():
            return 0.0
        if dead is not None:
            try:
                os.waitpid(dead, os.WNOHANG)
            except ChildProcessError:
                pass
        if self._conn is not None:
            self._conn.close()
            self._conn, self._zygote = None, None
        return self._warm_up()

    def _spawn_zygote(self) -> None:
        """A new interpreter running the zygote's loop (wasmvisor.worker.forkserver.main)."""
        import sys

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            fd = theirs.fileno()
            code = f"import sys; sys.path[:] = {sys.path!r}; from {FORKSERVER_MODULE} import main; main()"
            argv = [sys.executable, *SPAWN_FLAGS, "-c", code, str(fd), self._entry, *self._preload]
            os.set_inheritable(fd, True)
            pid = os.posix_spawn(sys.executable, argv, os.environ)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._conn, self._zygote = ours, pid

    def _ping_zygote(self) -> float:
        """Fork a child that exits at once and wait for its end: the zygote is serving."""
        began = time.monotonic()
        pid, sentinel, pidfd = self._fork(None, "")
        try:
            read_status(sentinel)
        except EOFError as exc:
            raise Unavailable(f"zygote: no answer to a ping: {exc}") from None
        finally:
            os.close(sentinel)
            if pidfd >= 0:
                os.close(pidfd)
        return time.monotonic() - began

    def _fork(self, sock: socket.socket | None, name: str) -> tuple[int, int, int]:
        """Ask the zygote for a worker on `sock` (titled `name`), or a ping without a socket.
        Returns (pid, status pipe's read end: the sentinel, pidfd or -1)."""
        if self._conn is None or not self._zygote_alive():
            self._restart(self._zygote)  # never started, or died (keep_zygote may not have seen it yet)
        assert self._conn is not None
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        fds = [status_w] if sock is None else [status_w, sock.fileno()]
        message = b"ping" if sock is None else b"run " + name.encode("utf-8", "replace")[:4000]
        try:
            socket.send_fds(self._conn, [message], fds)
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
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.005)


def _resolve_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def run_preload_hooks(modules: list[ModuleType]) -> None:
    """Call `zygote_preload()` of each module that has one (an engine's shared state, made once
    before any worker is forked: wasmtime_engine.zygote_preload)."""
    for module in modules:
        hook = getattr(module, "zygote_preload", None)
        if callable(hook):
            hook()


MAX_FD = 1 << 30
"""Above any fd a process can have (the kernel's nr_open is at most 2**30 - 64)."""


def close_fds_except(keep: Sequence[int]) -> None:
    """Close every fd of this process but 0, 1, 2 and `keep` (after a fork: the parent's sockets
    must not stay open in a child that outlives their use)."""
    low = 3
    for fd in sorted({fd for fd in keep if fd >= 3}):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, MAX_FD)  # close_range(2): no listing of /proc/self/fd


def _zygote_after_fork(conn_fd: int, entry: str) -> None:
    """The forked zygote's life: become the zygote, then serve fork requests on `conn_fd`. Ends the
    process; never returns into the supervisor's code."""
    code = 0
    try:
        # The supervisor's listening socket and log pipes must not stay open here (nor, through
        # here, in workers): a supervisor that died would still seem to serve.
        close_fds_except((conn_fd,))
        importlib.import_module(FORKSERVER_MODULE).run_zygote(conn_fd, entry)
    except BaseException:  # noqa: B036 - nothing may escape into the supervisor's code
        code = 70
        traceback.print_exc()
    finally:
        os._exit(code)
