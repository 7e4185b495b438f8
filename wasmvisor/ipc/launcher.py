"""The supervisor's side of the zygote: fork workers from a multiprocessing forkserver and talk to
each one over its own socketpair.

The zygote (`wasmvisor-zygote`) is a multiprocessing forkserver (the standard library's: see
MULTIPROCESSING) that preloads wasmtime and the worker code once; each `spawn` forks a worker from
it in about a millisecond. This module is imported by the supervisor: it imports neither wasmtime
nor worker code (it names them as strings) and imports multiprocessing only when the zygote is
first needed.

Three things differ from `multiprocessing.get_context("forkserver").Process(...).start()`:
- all blocking forkserver calls run on one launcher-owned thread: the zygote sets
  PR_SET_PDEATHSIG, which fires when the *thread* that spawned it ends, so that thread must
  live as long as the launcher;
- the preparation data sent to each child drops `init_main_from_path/_name`: multiprocessing
  would otherwise re-run the supervisor's `__main__` (a console script, or pytest) in every
  worker;
- multiprocessing's resource tracker (one more Python process) is not started: wasmvisor shares
  no semaphores or shared memory between processes.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import signal
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

from wasmvisor.errors import Unavailable

TYPE_CHECKING = False  # typing and concurrent.futures are not loaded in the zygote for this module
if TYPE_CHECKING:
    import asyncio
    import concurrent.futures
    from typing import Any

    from wasmvisor.ipc import messages

# asyncio and the message codec (~60 ms of imports) are imported where they are used: the supervisor
# starts the zygote before it loads them (supervisor/daemon_setup.py), so that both overlap.

log = logging.getLogger(__name__)
ZYGOTE_MODULE = "wasmvisor.worker.zygote"
WORKER_ENTRY = "wasmvisor.worker.main"
DEFAULT_PRELOAD = ("wasmtime", "wasmvisor.engines.wasmtime_engine", WORKER_ENTRY)
"""Modules the zygote imports once. The engine module only imports wasmtime (it compiles
nothing at import), and saves each worker ~4 ms."""
LINE_LIMIT = 1 << 20
ZYGOTE_LOST = 255
"""wait_exit's answer when neither the zygote nor the worker's own status could tell its end."""
ORPHAN_REAP_TRIES = 200
ORPHAN_REAP_RETRY_SECONDS = 0.01
"""How long (tries x seconds) an ended worker of a lost zygote may take to become our child."""


MULTIPROCESSING = "multiprocessing"
"""The forkserver implementation: the standard library's. `multiprocess` (its fork, which pickles with
dill) costs ~25 ms more to import, in the supervisor and again in the zygote, and nothing here needs
dill: the targets are module-level functions and the only other argument is a socket."""

FREEZE_MODULE = "wasmvisor.worker.zygote_frozen"
"""Imported last in the zygote: gc.freeze() after the preload, so workers share its heap."""


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
        # Always first: the zygote's identity, then what unpickling each child's process object
        # imports (this module holds the trampoline; popen_forkserver holds the fd-passing
        # class: ~1.5 ms per child if not preloaded).
        always = [ZYGOTE_MODULE, __name__, f"{MULTIPROCESSING}.popen_forkserver"]
        last = [FREEZE_MODULE]
        self._preload = [*always, *(m for m in preload if m not in always + last), *last]
        self._entry = entry
        from concurrent.futures import ThreadPoolExecutor  # the zygote imports this module, not the class

        self._executor = ThreadPoolExecutor(1, thread_name_prefix="wasmvisor-zygote")
        self._server: Any = None
        self._mp: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        self._closing = False
        self._warming: concurrent.futures.Future[float] | None = None

    @property
    def zygote_pid(self) -> int | None:
        """The zygote's pid, once started."""
        return None if self._server is None else self._server._forkserver_pid

    def warm_up(self) -> float:
        """Start the zygote and wait until its preload is done; returns the seconds it took.

        Blocking: the supervisor calls it in a thread at startup so it overlaps the first Create.
        After `begin_warm_up`, it waits for that start rather than making another.
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
        (a supervisor forked from the node's template: supervisor/template.py). About a millisecond
        instead of a new interpreter's ~150 ms. Call it on the main thread before any other thread
        starts: the zygote's parent-death signal follows the forking thread, and a fork from a
        threaded process copies locks that other threads may hold. Returns the zygote's pid.
        """
        mp = self._modules()
        connection = importlib.import_module(f"{MULTIPROCESSING}.connection")
        address = connection.arbitrary_address("AF_UNIX")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(address)
            os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()
        except BaseException:
            listener.close()
            _unlink(address)
            raise
        pid = os.fork()
        if pid == 0:  # the zygote: never returns
            _zygote_after_fork(mp["forkserver"], listener.detach(), alive_r)
        os.close(alive_r)
        listener.close()
        self._server._forkserver_address = address
        self._server._forkserver_alive_fd = alive_w
        self._server._forkserver_pid = pid
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
            address = self._server._forkserver_address
            try:
                seconds = await loop.run_in_executor(self._executor, self._warm_up)
            except Exception as exc:
                log.error("zygote restart failed: %s; trying again on the next spawn", exc)
                return
            if address and address != self._server._forkserver_address:
                _unlink(address)  # the dead zygote's listening socket
            log.info("zygote %s restarted in %.3f s", self.zygote_pid, seconds)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the zygote (workers keep running) and the launcher's thread."""
        self._closing = True
        try:
            self._executor.submit(self._stop, timeout).result()
        finally:
            self._executor.shutdown(wait=True)

    # -- on the launcher's thread ---------------------------------------------------------

    def _modules(self) -> dict[str, ModuleType]:
        if not self._mp:
            for name in ("context", "forkserver", "popen_forkserver", "reduction", "resource_tracker",
                         "spawn"):
                self._mp[name] = importlib.import_module(f"{MULTIPROCESSING}.{name}")
            tracker = self._mp["resource_tracker"]._resource_tracker
            if tracker._fd is None:
                # An fd that answers the tracker's liveness probe, so none is spawned.
                tracker._fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            self._server = self._mp["forkserver"].ForkServer()
            self._server.set_forkserver_preload(self._preload)
        return self._mp

    def _warm_up(self, spawned: threading.Event | None = None) -> float:
        began = time.monotonic()
        self._modules()
        if spawned is not None:
            try:
                self._server.ensure_running()  # the zygote's process; its preload goes on alone
            finally:
                spawned.set()
        pid, sentinel, pidfd = self._fork(None, "wasmvisor-ping")
        try:
            _read_signed(sentinel)  # the ping child's returncode: the zygote is serving
        finally:
            os.close(sentinel)
            if pidfd >= 0:
                os.close(pidfd)
        return time.monotonic() - began

    def _fork(self, sock: socket.socket | None, name: str) -> tuple[int, int, int]:
        """Ask the zygote for a child running `_run_worker(entry, sock)` (`_ping` without a
        socket). Returns (pid, sentinel fd, pidfd or -1)."""
        mp = self._modules()
        context = mp["context"]
        if sock is None:
            process = context.ForkServerProcess(target=_ping, name=name)
        else:
            process = context.ForkServerProcess(target=_run_worker, args=(self._entry, sock), name=name)
        prep = mp["spawn"].get_preparation_data(name)
        prep.pop("init_main_from_path", None)
        prep.pop("init_main_from_name", None)
        passing = _FdPassing(mp["popen_forkserver"]._DupFd)
        buf = io.BytesIO()
        context.set_spawning_popen(passing)
        try:
            mp["reduction"].dump(prep, buf)
            mp["reduction"].dump(process, buf)
        finally:
            context.set_spawning_popen(None)
        try:
            sentinel, data_w = self._server.connect_to_new_process(passing.fds)
        except OSError as exc:
            raise Unavailable(f"zygote: cannot reach it: {exc}") from None
        try:
            with open(data_w, "wb", closefd=True) as f:
                f.write(buf.getbuffer())
            pid = _read_signed(sentinel)
        except (OSError, EOFError) as exc:
            os.close(sentinel)
            raise Unavailable(f"zygote: no child from it: {exc}") from None
        try:
            pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            pidfd = -1  # already gone (its exit is in the sentinel), or no pidfd support
        return pid, sentinel, pidfd

    def _stop(self, timeout: float) -> None:
        server = self._server
        if server is None or server._forkserver_pid is None:
            return
        pid = server._forkserver_pid
        os.close(server._forkserver_alive_fd)  # EOF on its alive pipe: the zygote exits
        server._forkserver_alive_fd = None
        server._forkserver_pid = None
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
        address = server._forkserver_address
        server._forkserver_address = None
        if address:
            _unlink(address)


class WorkerHandle:
    """The supervisor's view of one worker: its pipe, its pid and its exit."""

    def __init__(
        self,
        pid: int,
        sentinel: int,
        pidfd: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        launcher_closed: Callable[[], bool] = lambda: False,
    ) -> None:
        self.pid = pid
        self._launcher_closed = launcher_closed
        self._sentinel = sentinel
        self._pidfd = pidfd
        self._reader = reader
        self._writer = writer
        self._status = b""
        self._exit: asyncio.Future[int] | None = None
        self._watching: asyncio.AbstractEventLoop | None = None
        self._watched_fd = -1
        self._orphan_tries = 0
        self._closed = False
        os.set_blocking(sentinel, False)

    @property
    def sentinel(self) -> int:
        """Readable when the worker has ended (the zygote writes its returncode there). Read
        it only through `wait_exit`."""
        return self._sentinel

    @property
    def returncode(self) -> int | None:
        """As `wait_exit`'s result, once known."""
        if self._exit is not None and self._exit.done() and not self._exit.cancelled():
            return self._exit.result()
        return None

    async def receive(self) -> messages.Message:
        """The worker's next message. EOFError at end of stream; ProtocolError on a bad line."""
        from wasmvisor.ipc import messages

        try:
            line = await self._reader.readline()
        except ValueError as exc:  # longer than LINE_LIMIT
            raise messages.ProtocolError(f"ipc line from worker {self.pid} too long: {exc}") from None
        if not line:
            raise EOFError(f"worker {self.pid} closed its pipe")
        if not line.endswith(b"\n"):
            raise messages.ProtocolError(f"worker {self.pid} ended its pipe mid-line: {line[:200]!r}")
        return messages.decode(line)

    async def send(self, msg: messages.Message) -> None:
        """Send one message (BrokenPipeError/ConnectionResetError when the worker is gone)."""
        from wasmvisor.ipc import messages

        self._writer.write(messages.encode(msg))
        await self._writer.drain()

    async def wait_exit(self) -> int:
        """The worker's end as the zygote saw it: >= 0 its exit code, < 0 minus the signal
        that killed it. When the zygote died first, the worker's own wait status (it is then
        the supervisor's child); 255 when the launcher closed the zygote, or when neither can tell."""
        import asyncio

        if self._exit is None:
            loop = asyncio.get_running_loop()
            self._exit = loop.create_future()
            if self._closed:
                self._exit.set_result(ZYGOTE_LOST)
            else:
                self._watching = loop
                self._watched_fd = self._sentinel
                loop.add_reader(self._sentinel, self._on_sentinel)
                self._on_sentinel()
        return await asyncio.shield(self._exit)

    def kill(self, sig: int) -> None:
        """Send `sig` to the worker; nothing when it has ended already. Through a pidfd: the
        pid cannot have been reused by another process in the meantime."""
        try:
            if self._pidfd >= 0:
                signal.pidfd_send_signal(self._pidfd, sig)
            elif self.returncode is None and not self._closed:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """Forget the worker (it keeps running): close the pipe and the fds."""
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        if self._exit is not None and not self._exit.done():
            self._exit.cancel()
        self._writer.close()
        os.close(self._sentinel)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def _on_sentinel(self) -> None:
        assert self._exit is not None
        try:
            chunk = os.read(self._sentinel, 8 - len(self._status))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._status += chunk
            if len(self._status) < 8:
                return
            code = struct.unpack("q", self._status)[0]
        elif self._pidfd >= 0 and self._watching is not None and not self._launcher_closed():
            # The zygote died first (not stopped by a closing launcher: then the supervisor is
            # going away and its workers outlive it, as runc containers outlive their shim).
            # The worker lives on, re-parented to the supervisor (a child subreaper): watch its
            # pidfd and reap this one pid ourselves (never waitpid(-1): the zygote is our child
            # too, and multiprocessing checks it with waitpid).
            loop = self._watching
            self._unwatch()
            self._orphan_tries = 0
            self._watching = loop
            self._watched_fd = self._pidfd
            loop.add_reader(self._pidfd, self._reap_orphan)
            return
        else:
            code = ZYGOTE_LOST
        self._settle(code)

    def _reap_orphan(self) -> None:
        """The worker of a lost zygote has ended (its pidfd is readable): collect its status."""
        assert self._exit is not None
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
            if self._orphan_tries >= ORPHAN_REAP_TRIES:
                self._settle(ZYGOTE_LOST)
                return
        if pid:
            self._settle(os.waitstatus_to_exitcode(status))
            return
        # Not re-parented to us yet (the zygote's exit is still being torn down): look again soon.
        self._orphan_tries += 1
        loop = self._watching
        self._unwatch()
        if loop is not None:
            self._watching = loop
            loop.call_later(ORPHAN_REAP_RETRY_SECONDS, self._retry_orphan)

    def _retry_orphan(self) -> None:
        if self._exit is not None and not self._exit.done() and not self._closed:
            self._reap_orphan()

    def _settle(self, code: int) -> None:
        assert self._exit is not None
        self._unwatch()
        if not self._exit.done():
            self._exit.set_result(code)

    def _unwatch(self) -> None:
        if self._watching is not None:
            if self._watched_fd >= 0:
                self._watching.remove_reader(self._watched_fd)
            self._watching = None
            self._watched_fd = -1


class _FdPassing:
    """Collects the fds multiprocessing's reducers pass to the child by SCM_RIGHTS (what its
    forkserver Popen does while pickling)."""

    def __init__(self, dupfd: type) -> None:
        self.fds: list[int] = []
        self.DupFd = dupfd

    def duplicate_for_child(self, fd: int) -> int:
        self.fds.append(fd)
        return len(self.fds) - 1


def _resolve_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _read_signed(fd: int) -> int:
    data = b""
    while len(data) < 8:
        chunk = os.read(fd, 8 - len(data))
        if not chunk:
            raise EOFError("zygote closed the status pipe")
        data += chunk
    return int(struct.unpack("q", data)[0])


def close_fds_except(keep: Sequence[int]) -> None:
    """Close every fd of this process but 0, 1, 2 and `keep` (after a fork: the parent's sockets
    must not stay open in a child that outlives their use)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own directory fd


def _zygote_after_fork(forkserver: ModuleType, listener_fd: int, alive_r: int) -> None:
    """The forked zygote's life: become the zygote, then multiprocessing's forkserver loop, whose
    preload is done already. Ends the process; never returns into the supervisor's code."""
    code = 0
    try:
        # The supervisor's listening socket and log pipes must not stay open here (nor, through
        # here, in workers): a supervisor that died would still seem to serve.
        close_fds_except((listener_fd, alive_r))
        zygote = importlib.import_module(ZYGOTE_MODULE)
        zygote.become_zygote()
        import gc

        gc.freeze()  # as zygote_frozen does for a spawned zygote
        forkserver.main(listener_fd, alive_r, [])
    except BaseException:  # noqa: B036 - nothing may escape into the supervisor's code
        code = 70
        traceback.print_exc()
    finally:
        os._exit(code)


def _run_worker(entry: str, sock: socket.socket) -> None:
    """Runs in the forked child: import the worker entry module by name and hand it the pipe.
    Never returns into the forkserver's code."""
    code = 70
    try:
        fd = sock.detach()
        importlib.import_module(entry).run(fd)
    except BaseException:  # noqa: B036
        traceback.print_exc()
    finally:
        os._exit(code)


def _ping() -> None:
    """The warm-up child: proves the zygote has finished its preload and forks."""
