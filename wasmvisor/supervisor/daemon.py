"""The supervisor process: one per pod group. Serves the Task API, owns the zygote, never runs guests.

`serve` is the internal `serve` action that `start` re-executes. `Supervisor.run` is the one composition
root: it builds the event publisher, the wasm layer reader, the instance factory (on the zygote's
launcher, or the shim's own Instance class with no zygote), the task registry and service, the group's
Lifetime (lifetime.py: tasks, `start`'s claims, the linger after Shutdown), the pod sandbox's service
(pods/service.py, for containerd 2.x's shim sandboxer) and the transports, and hands each what it uses.
Signal handlers only set the stop event; the loop does the work. The Task API is served over ttrpc on the
socket `start` handed over as fd 3, or, with `-protocol grpc`, over gRPC on the socket path
(grpc_server.py binds it), beside the Sandbox API, the Group service that answers `start`'s claims and the
Admin service that answers `wasmvisor ps` (admin.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import time

from wasmvisor import errors, tracing
from wasmvisor.ipc.zygote import WorkerLauncher
from wasmvisor.proto.containerd.runtime.sandbox.v1 import sandbox_pb2
from wasmvisor.proto.containerd.task.v2 import shim_pb2
from wasmvisor.supervisor import admin, daemon_setup
from wasmvisor.supervisor.config import Config
from wasmvisor.supervisor.containerd.wasm_layers import WasmLayerReader
from wasmvisor.supervisor.lifetime import Lifetime
from wasmvisor.supervisor.pods.service import SERVICE as SANDBOX_SERVICE
from wasmvisor.supervisor.pods.service import SandboxService
from wasmvisor.supervisor.rpc.service import service_from_descriptor
from wasmvisor.supervisor.rpc.socket_file import SocketFile
from wasmvisor.supervisor.rpc.ttrpc_server import TtrpcServer
from wasmvisor.supervisor.shim import claim
from wasmvisor.supervisor.shim.cliargs import ShimArgs
from wasmvisor.supervisor.tasks.describe import TaskDescriber
from wasmvisor.supervisor.tasks.instance import InstanceFactory, WorkerInstance, instance_class
from wasmvisor.supervisor.tasks.publisher import EventPublisher
from wasmvisor.supervisor.tasks.registry import TaskRegistry
from wasmvisor.supervisor.tasks.service import TaskService

TYPE_CHECKING = False
if TYPE_CHECKING:
    from wasmvisor.supervisor.rpc.grpc_server import GrpcServer

log = logging.getLogger(__name__)

TASK_SERVICES = ("containerd.task.v2.Task", "containerd.task.v3.Task")
SHUTDOWN_FLUSH_SECONDS = 3.0


def serve(args: ShimArgs, config: Config, engine: str, prepared: daemon_setup.Prepared | None = None, *,
          instance: str | None = None) -> int:
    """Run the supervisor until Shutdown (with no task left) or SIGTERM/SIGINT.

    `prepared`: what daemon_setup.prepare did already (main.py calls it before importing this
    module, so that the zygote starts first); done here when None. `instance`: the shim's own
    Instance class ("module:Class"), driven instead of workers from the zygote.
    """
    if prepared is None:
        prepared = daemon_setup.prepare(args, config, engine, instance=instance)
    group, level, launcher = prepared.group, prepared.level, prepared.launcher
    listener: socket.socket | None = None
    problem = ""
    try:
        new_instance = instance_factory(instance, launcher)
    except errors.ShimError as exc:
        problem = f"cannot serve: {exc.message}"
    if args.protocol == "grpc":
        if not args.socket:
            problem = "serve -protocol grpc needs -socket (it is started by the start action)"
    elif args.socket_fd is None:
        problem = "serve needs -socket-fd (it is started by the start action)"
    else:
        listener = socket.socket(fileno=args.socket_fd)
    if problem:
        log.error("%s", problem)
        if launcher is not None:
            launcher.close()
        if listener is not None:
            listener.close()
        return 1
    address = SocketFile(_socket_path(listener, args.socket))
    try:
        supervisor = Supervisor(args, group, engine, level, new_instance, launcher)
        return asyncio.run(supervisor.run(listener, address))
    finally:
        if listener is not None:
            listener.close()
        address.remove()  # so that a later `start` binds afresh (done already when the Lifetime ended us)


def instance_factory(instance: str | None, launcher: WorkerLauncher | None) -> InstanceFactory:
    """The registry's InstanceFactory: the `new` of the shim's own Instance class named `instance`,
    else a WorkerInstance forked by the zygote's `launcher`."""
    if instance:
        return instance_class(instance).new
    if launcher is None:
        raise errors.Internal("no zygote launcher for the worker instances")
    return functools.partial(WorkerInstance.new, launcher=launcher)


class Supervisor:
    def __init__(self, args: ShimArgs, group: str, engine: str, level: str, new_instance: InstanceFactory,
                 launcher: WorkerLauncher | None) -> None:
        self.args = args
        self.new_instance = new_instance
        self.launcher = launcher
        self.group = group
        self.engine = engine
        self.level = level
        self.stop = asyncio.Event()
        self.started_at_ns = time.time_ns()
        """The sandbox's created time, when the supervisor is a pod sandbox (pods/service.py)."""

    async def run(self, listener: socket.socket | None, address: SocketFile) -> int:
        loop = asyncio.get_running_loop()
        for signo in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signo, self.stop.set)
        launcher = self.launcher
        warm: asyncio.Future[float] | None = None
        if launcher is not None:
            launcher.reaper.attach(loop)  # the one place this process reaps (SIGCHLD only wakes the loop)
            # The zygote boots (imports wasmtime) while the first Create is on its way: started in
            # daemon_setup, awaited here only to know it is up (Create's spawn queues behind it).
            warm = loop.run_in_executor(None, launcher.warm_up)
        tracer = self._tracer()
        publisher = EventPublisher(os.environ.get("TTRPC_ADDRESS", ""), self.args.namespace)
        await publisher.start()
        layers = WasmLayerReader(self.args.address or os.environ.get("GRPC_ADDRESS", ""), self.args.namespace,
                                 self.engine, tracer=tracer)
        registry = TaskRegistry(self.args.namespace, self.group, new_instance=self.new_instance, events=publisher,
                                layers=layers, engine=self.engine, log_level=self.level)
        sandboxes: SandboxService | None = None
        lifetime = Lifetime(lambda: len(registry) + (sandboxes.held() if sandboxes else 0), release=address.remove,
                            end=self.stop.set, call_later=loop.call_later)
        lifetime.claim(self.args.id)  # the `start` that launched us answered containerd for this task
        sandboxes = SandboxService(registry, lifetime, namespace=self.args.namespace, pid=os.getpid(),
                                   started_at_ns=self.started_at_ns)
        service = TaskService(registry, lifetime)
        describer = TaskDescriber(registry)
        descriptor = shim_pb2.DESCRIPTOR.services_by_name["Task"]
        services = [service_from_descriptor(name, descriptor, service) for name in TASK_SERVICES]
        if tracer.enabled:
            from wasmvisor.supervisor.tasks.spans import TaskSpans  # only when traces are exported

            spans = TaskSpans(tracer, registry, describer)
            services = [spans.wrap(s) for s in services]
        services.append(service_from_descriptor(SANDBOX_SERVICE, sandbox_pb2.DESCRIPTOR.services_by_name["Sandbox"],
                                                sandboxes))
        services.append(claim.service(lifetime.claim, lifetime.released, f"{self.args.namespace}/{self.group}"))
        services.append(admin.service(describer.describe))  # `wasmvisor ps`
        server: TtrpcServer | GrpcServer
        serving: asyncio.Task[None] | None = None
        if listener is None:
            from wasmvisor.supervisor.rpc.grpc_server import GrpcServer  # grpcio is slow to import

            server = GrpcServer(services)
            await server.start(self.args.socket)
            address.mark()  # grpcio has bound the path now
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
        if launcher is not None and warm is not None:
            try:
                await warm
                keeper = loop.create_task(launcher.keep_zygote(), name="zygote-keeper")
            except Exception:
                log.exception("zygote failed to start; workers will be forked on demand")
        await self.stop.wait()
        lifetime.end()  # after a signal: refuse claims and give the address up before the drain
        if keeper is not None:
            keeper.cancel()
        log.info("supervisor shutting down (%d task(s) left)", len(registry))
        await layers.drain(SHUTDOWN_FLUSH_SECONDS)  # precompiled layers still being stored
        await server.close()
        if serving is not None:
            serving.cancel()
        await publisher.close(SHUTDOWN_FLUSH_SECONDS)
        if launcher is not None:
            launcher.close()
        tracer.close()  # exports the spans still batched
        return 0

    def _tracer(self) -> tracing.Tracer:
        """The OpenTelemetry tracer when the OTLP variables ask for one (imported only then), else none."""
        if not tracing.configured(os.environ):
            return tracing.NO_TRACER
        try:
            from wasmvisor.supervisor.otel import OtelTracer
        except ImportError as exc:
            log.warning("OTLP endpoint set but OpenTelemetry is not installed (pip install 'wasmvisor[otel]'): %s",
                        exc)
            return tracing.NO_TRACER
        try:
            return OtelTracer({"wasmvisor.namespace": self.args.namespace, "wasmvisor.pod": self.group})
        except errors.ShimError as exc:
            log.warning("traces off: %s", exc.message)
            return tracing.NO_TRACER


def _socket_path(listener: socket.socket | None, path: str) -> str:
    """The file the supervisor listens on: `-socket`, else the listener's name ("" if abstract)."""
    if not path and listener is not None:
        try:
            path = listener.getsockname()
        except OSError:
            path = ""
    return path if isinstance(path, str) and not path.startswith("\0") else ""
