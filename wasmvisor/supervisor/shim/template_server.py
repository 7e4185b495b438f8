"""The node's supervisor template (`wasmvisor-template`): one process per containerd and shim build that
has imported what a supervisor and its zygote need, and forks a new group's supervisor on request.

Without it a new group costs three interpreters in a row (`start`, the supervisor importing asyncio,
protobuf and the Task API, then its zygote importing wasmtime and the worker code): ~300 ms before the
first Create is answered. Forked from here, the supervisor has all of it already and forks its own
zygote from itself (WorkerLauncher.fork_zygote), so a new group is ready in a few milliseconds, and
supervisors, zygotes and the template share their imported pages (less memory per group as well).

`start` (template_client.py) connects to the template's socket, sends one request, the `serve`
command line with its environment and working directory (NUL-separated fields after a length line),
with the listening socket of the new supervisor attached (SCM_RIGHTS), and reads back one line:
`pid N` or `error MESSAGE` (the format: template_protocol.py).
Whatever goes wrong there, `start` falls back to spawning the supervisor itself. The socket is 0600
and only peers of the template's own uid are served (SO_PEERCRED), as with supervisors.

The template is single-threaded (it forks) and never runs guest code nor compiles wasm. One select
loop serves every client at once: a connection is read as its bytes come, so a client that connects
and says nothing delays no one (it is answered with an error after REQUEST_TIMEOUT). It reaps its
children (the supervisors) in one place, woken by SIGCHLD through a wake-up pipe (linux/wakeup.py).
It exits when the containerd it serves is gone (`start` passes containerd's pid, its own parent, as
`-containerd-pid`; the template watches it through a pidfd opened at once, while containerd still
waits for that `start`), after IDLE_ENV seconds (default 600) with no request and no supervisor
left, or on SIGTERM; supervisors it forked run on (each is in its own session).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import select
import signal
import socket
import sys
import time

from wasmvisor import tracing
from wasmvisor.linux.fork import close_fds_except, run_child
from wasmvisor.linux.wakeup import ChildWakeup
from wasmvisor.supervisor.rpc.socket_file import SocketFile
from wasmvisor.supervisor.rpc.ttrpc_server import peer_credentials
from wasmvisor.supervisor.shim.cliargs import ShimArgs, UsageError, parse_args
from wasmvisor.supervisor.shim.template_protocol import Request, parse_request, request_payload

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import NoReturn

    from wasmvisor.supervisor.config import Config

    RunSupervisor = Callable[..., int]
    """shim.main.run_supervisor: `(args, config, engine, *, instance, fork_zygote) -> exit status`."""

TITLE = "wasmvisor-template"
IDLE_ENV = "WASMVISOR_TEMPLATE_IDLE_SECONDS"
DEFAULT_IDLE_SECONDS = 600.0
REQUEST_TIMEOUT = 5.0
"""Seconds a connected client has to send its whole request."""
LISTEN_FD = 3

PRELOAD = (
    # The supervisor: its Task API, transport, events, registry, mounts, cgroups, logging.
    "asyncio", "concurrent.futures", "ctypes", "setproctitle",
    "wasmvisor.supervisor.daemon", "wasmvisor.supervisor.daemon_setup", "wasmvisor.logs",
    "wasmvisor.supervisor.tasks.service", "wasmvisor.supervisor.tasks.registry",
    "wasmvisor.supervisor.tasks.instance", "wasmvisor.supervisor.tasks.mounts", "wasmvisor.supervisor.tasks.cgroup",
    "wasmvisor.supervisor.containerd.wasm_layers", "wasmvisor.supervisor.tasks.publisher",
    "wasmvisor.supervisor.rpc.ttrpc", "wasmvisor.spec", "wasmvisor.worker.spec_linux",
    "wasmvisor.cgroups", "wasmvisor.cgroups.migration", "wasmvisor.ipc.messages", "wasmvisor.ipc.channel",
    "wasmvisor.ipc.worker_handle", "wasmvisor.linux.reaper", "orjson",
    # Imported lazily on the way to a group's first Create (the WorkerLauncher's thread pool, the cgroup
    # hierarchies). An import after the fork runs the import machinery's code for the first time in that
    # process: making the WorkerLauncher wrote 1.37 MB of the supervisor's shared pages, 0.30 with these
    # preloaded (and the zygote, forked right after, shares those pages until the supervisor rewrites them).
    "concurrent.futures.thread", "wasmvisor.cgroups.v1", "wasmvisor.cgroups.v2", "wasmvisor.cgroups.systemd_bus",
    # The zygote: its loop (the fork protocol's other half) and identity, then its own preload: the
    # worker and the engine (wasmtime).
    "wasmvisor.ipc.zygote", "wasmvisor.worker.zygote",
)


TRACING_PRELOAD = ("wasmvisor.supervisor.otel", "wasmvisor.supervisor.tasks.spans", "requests")
"""With traces on, OpenTelemetry and the HTTP client its exporter loads (~0.1-0.3 s of imports), once per
node instead of once per supervisor. Zygotes and workers inherit the modules as frozen shared pages and run
none of their code."""


def preload(engine: str, instance: str | None = None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Every module the template imports: PRELOAD, the tracing modules when `environ` asks for traces
    (and the `otel` extra is installed), then the zygote's preload for `engine`, or the module of the
    shim's own `instance` class (no zygote runs then)."""
    from wasmvisor.ipc.zygote import preload_for

    extra = (instance.split(":", 1)[0],) if instance else preload_for(engine)
    if tracing.configured(environ) and importlib.util.find_spec("opentelemetry.sdk") is not None:
        extra = (*TRACING_PRELOAD, *extra)
    return [*PRELOAD, *(m for m in extra if m not in PRELOAD)]


def idle_seconds(environ: dict[str, str] | os._Environ[str]) -> float:
    """The idle time after which the template exits (IDLE_ENV; a bad or negative value: the default)."""
    try:
        value = float(environ.get(IDLE_ENV, ""))
    except ValueError:
        return DEFAULT_IDLE_SECONDS
    return value if value >= 0 else DEFAULT_IDLE_SECONDS


def serve(args: ShimArgs, config: Config | None, engine: str, run_supervisor: RunSupervisor, *,
          instance: str | None = None) -> int:
    """The `template` action: preload, then fork supervisors on request until idle or SIGTERM; each
    forked child becomes its group's supervisor through `run_supervisor` (shim/main.py's, handed in
    so that this module does not import the module that imports it)."""
    if args.socket_fd is None:
        sys.stderr.write("template needs -socket-fd (it is started by the start action)\n")
        return 1
    listener = socket.socket(fileno=args.socket_fd)
    from wasmvisor.ipc.zygote import run_preload_hooks

    run_preload_hooks([importlib.import_module(name) for name in preload(engine, instance)])
    from setproctitle import setproctitle

    setproctitle(f"{TITLE} -address {args.address} {args.socket}")
    gc.freeze()  # what is loaded now is shared with every supervisor, zygote and worker forked from here
    return Template(listener, args.socket, config, engine, idle_seconds(os.environ), run_supervisor,
                    instance=instance, containerd_pid=args.containerd_pid).run()


class Client:
    """A connection whose request has not fully arrived: its bytes and fds so far, and its deadline."""

    __slots__ = ("conn", "data", "fds", "deadline")

    def __init__(self, conn: socket.socket, deadline: float) -> None:
        self.conn = conn
        self.data = b""
        self.fds: list[int] = []
        self.deadline = deadline

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.conn.close()


class Template:
    def __init__(self, listener: socket.socket, path: str, config: Config | None, engine: str, idle: float,
                 run_supervisor: RunSupervisor, *, instance: str | None = None, containerd_pid: int = 0) -> None:
        self.listener = listener
        self.run_supervisor = run_supervisor
        self.path = path
        self.config = config
        self.engine = engine
        self.instance = instance
        self.idle = idle
        self.children: set[int] = set()
        self.clients: dict[int, Client] = {}
        self.stopping = False
        self.socket_file = SocketFile(path)  # the file `start` bound for us
        self.containerd = _pidfd(containerd_pid)

    def run(self) -> int:
        wakeup = ChildWakeup()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.listener.setblocking(False)
        last = time.monotonic()
        watched = [self.listener.fileno(), wakeup.fd, *([self.containerd] if self.containerd >= 0 else [])]
        try:
            while not self.stopping:
                now = time.monotonic()
                timeout = min([1.0, *(max(0.0, c.deadline - now) for c in self.clients.values())])
                ready, _, _ = select.select([*watched, *self.clients], [], [], timeout)
                if self.containerd in ready:
                    break  # containerd is gone: no `start` will come from it again
                if wakeup.fd in ready:
                    wakeup.drain()
                if self.reap() and not self.children:
                    last = time.monotonic()  # idle from the end of the last group
                if self.listener.fileno() in ready:
                    self.accept()
                for fd in ready:
                    if fd in self.clients:
                        self.receive(self.clients[fd], wakeup)
                self.expire()
                if self.clients or self.listener.fileno() in ready:
                    last = time.monotonic()
                elif not self.children and time.monotonic() - last > self.idle:
                    break
        finally:
            self.socket_file.remove()  # unless a newer template has taken the path
            self.listener.close()
            for client in self.clients.values():
                client.close()
            if self.containerd >= 0:
                os.close(self.containerd)
            wakeup.close()
        return 0

    def _stop(self, signo: int, frame: object) -> None:
        self.stopping = True  # the loop acts on it (select returns on EINTR or the wake-up byte)

    def reap(self) -> bool:
        """The one place children are reaped: every supervisor that has ended. True if one had."""
        reaped = False
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return True
            if not pid:
                break
            self.children.discard(pid)
            reaped = True
        return reaped

    def accept(self) -> None:
        """Take every waiting connection of the template's uid (another user's is closed unanswered,
        as supervisors do); their requests are read as they arrive."""
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # BlockingIOError: none left
                return
            try:
                if peer_credentials(conn)[1] != os.getuid():
                    conn.close()
                    continue
            except OSError:
                conn.close()
                continue
            conn.setblocking(False)
            self.clients[conn.fileno()] = Client(conn, time.monotonic() + REQUEST_TIMEOUT)

    def receive(self, client: Client, wakeup: ChildWakeup) -> None:
        """Read what `client` has sent; once its request is whole, fork the supervisor and answer."""
        try:
            data, fds, flags, _ = socket.recv_fds(client.conn, 65536, 1)
        except BlockingIOError:
            return
        except OSError as exc:
            self._answer(client, f"error {exc}")
            return
        client.fds += fds
        client.data += data
        try:
            if flags & socket.MSG_CTRUNC or len(client.fds) > 1:
                raise ValueError("request carries more than one fd")
            payload = request_payload(client.data, ended=not data)
            if payload is None:
                return
            request = parse_request(payload)
            args = parse_args(request.argv)  # a command line the child would refuse is refused here
            pid = os.fork()
            if pid == 0:
                self._become_supervisor(client, request, args, wakeup)
            self.children.add(pid)
            answer = f"pid {pid}"
        except (OSError, ValueError, UsageError) as exc:
            answer = f"error {exc}"
        self._answer(client, answer)

    def expire(self) -> None:
        now = time.monotonic()
        for client in [c for c in self.clients.values() if c.deadline <= now]:
            self._answer(client, f"error request not received within {REQUEST_TIMEOUT:g} s")

    def _answer(self, client: Client, answer: str) -> None:
        """Send the one-line answer (a few bytes into an empty socket buffer) and close."""
        del self.clients[client.conn.fileno()]
        try:
            client.conn.send(" ".join(answer.split()).encode(errors="replace") + b"\n")
        except OSError:
            pass
        client.close()

    def _become_supervisor(self, client: Client, request: Request, args: ShimArgs, wakeup: ChildWakeup) -> NoReturn:
        """The forked child: become the supervisor `request` describes. Never returns."""

        def become() -> int:
            wakeup.after_fork()
            for signo in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signo, signal.SIG_DFL)
            self.listener.detach()  # closed below with the rest; the objects must not close reused fds
            for other in self.clients.values():
                other.conn.detach()
            os.setsid()
            os.chdir(request.cwd)
            os.environ.clear()
            os.environ.update(request.env)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            keep: tuple[int, ...] = ()
            if client.fds:
                os.dup2(client.fds[0], LISTEN_FD, inheritable=False)
                keep = (LISTEN_FD,)
            close_fds_except(keep)
            sys.argv[1:] = request.argv
            return self.run_supervisor(args, self.config, self.engine, instance=self.instance, fork_zygote=True)

        run_child(become)


def _pidfd(pid: int) -> int:
    """A pidfd of containerd (readable once it has ended), or -1: unknown, or no pidfds here."""
    if pid <= 1:
        return -1
    try:
        return os.pidfd_open(pid)
    except OSError:
        return -1
