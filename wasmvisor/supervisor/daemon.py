"""The supervisor process: one per pod group. Serves the Task API, owns the zygote, never runs guests.

`serve` is the internal `serve` action that `start` re-executes. Signal handlers only set the stop
event; the loop does the work. The Task API is served over ttrpc on the socket `start` handed over
as fd 3, or, with `-protocol grpc`, over gRPC on the socket path (grpc_server.py binds it).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys

from setproctitle import setproctitle

from wasmvisor.ipc.launcher import WorkerLauncher
from wasmvisor.proto.containerd.task.v2 import shim_pb2
from wasmvisor.supervisor import logs
from wasmvisor.supervisor.cliargs import ShimArgs
from wasmvisor.supervisor.config import Config
from wasmvisor.supervisor.events import EventPublisher
from wasmvisor.supervisor.instance import WorkerInstance
from wasmvisor.supervisor.rpc import service_from_descriptor
from wasmvisor.supervisor.task_service import TaskService
from wasmvisor.supervisor.tasks import TaskRegistry
from wasmvisor.supervisor.ttrpc import TtrpcServer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from wasmvisor.supervisor.grpc_server import GrpcServer

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
TASK_SERVICES = ("containerd.task.v2.Task", "containerd.task.v3.Task")
SHUTDOWN_FLUSH_SECONDS = 3.0


def serve(args: ShimArgs, config: Config, engine: str) -> int:
    """Run the supervisor until Shutdown (with no task left) or SIGTERM/SIGINT."""
    group = args.group or args.id
    setproctitle(f"wasmvisor-shim {args.namespace}/{group}")
    level = "debug" if args.debug else config.default_log_level
    if not config.no_setup_logger:
        fd = logs.open_log_fifo(args.bundle or os.getcwd())
        if fd is not None:
            os.dup2(fd, 2)
            os.close(fd)
        logs.configure(sys.stderr, level, namespace=args.namespace, pod=group)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
    listener: socket.socket | None = None
    if args.protocol == "grpc":
        if not args.socket:
            log.error("serve -protocol grpc needs -socket (it is started by the start action)")
            return 1
    elif args.socket_fd is None:
        log.error("serve needs -socket-fd (it is started by the start action)")
        return 1
    else:
        listener = socket.socket(fileno=args.socket_fd)
    try:
        return asyncio.run(Supervisor(args, group, engine, level).run(listener))
    finally:
        _remove_socket(listener, args.socket)


class Supervisor:
    def __init__(self, args: ShimArgs, group: str, engine: str, level: str) -> None:
        self.args = args
        self.group = group
        self.engine = engine
        self.level = level
        self.stop = asyncio.Event()

    async def run(self, listener: socket.socket | None) -> int:
        loop = asyncio.get_running_loop()
        for signo in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signo, self.stop.set)
        engine_module = self.engine.split(":", 1)[0]
        launcher = WorkerLauncher(preload=("wasmtime", "wasmvisor.worker.main", engine_module))
        WorkerInstance.launcher = launcher
        # The zygote boots (imports wasmtime) while the first Create is on its way.
        warm = loop.run_in_executor(None, launcher.warm_up)
        publisher = EventPublisher(os.environ.get("TTRPC_ADDRESS", ""), self.args.namespace)
        await publisher.start()
        registry = TaskRegistry(self.args.namespace, self.group, publisher, engine=self.engine, log_level=self.level)
        service = TaskService(registry, self.stop.set)
        descriptor = shim_pb2.DESCRIPTOR.services_by_name["Task"]
        services = [service_from_descriptor(name, descriptor, service) for name in TASK_SERVICES]
        server: TtrpcServer | GrpcServer
        serving: asyncio.Task[None] | None = None
        if listener is None:
            from wasmvisor.supervisor.grpc_server import GrpcServer  # grpcio is slow to import

            server = GrpcServer(services)
            await server.start(self.args.socket)
            protocol = "grpc"
        else:
            server = TtrpcServer(services)
            serving = loop.create_task(server.serve(listener))
            protocol = "ttrpc"
        log.info(
            "supervisor %d serving %s/%s over %s (%s)",
            os.getpid(), self.args.namespace, self.group, protocol, ", ".join(TASK_SERVICES),
        )
        keeper: asyncio.Task[None] | None = None
        try:
            await warm
            keeper = loop.create_task(launcher.keep_zygote(), name="zygote-keeper")
        except Exception:
            log.exception("zygote failed to start; workers will be forked on demand")
        await self.stop.wait()
        if keeper is not None:
            keeper.cancel()
        log.info("supervisor shutting down (%d task(s) left)", len(registry))
        await server.close()
        if serving is not None:
            serving.cancel()
        await publisher.close(SHUTDOWN_FLUSH_SECONDS)
        launcher.close()
        return 0


def _remove_socket(listener: socket.socket | None, path: str) -> None:
    """Close the listener and unlink its socket file, so that a later `start` binds afresh."""
    if listener is not None:
        if not path:
            try:
                path = listener.getsockname()
            except OSError:
                path = ""
        listener.close()
    if isinstance(path, str) and path and not path.startswith("\0"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
