"""Trace spans of the Task API: one per call, the worker's phases under Create and Start.

`TaskSpans.wrap` returns a Service whose handlers run inside a span named `SERVICE/METHOD` (as
containerd's own ttrpc spans are named), child of the `traceparent` in the request's metadata when
containerd sends one, with the task id, namespace, pod and module digest as attributes. The worker
measures its own phases and reports them over its pipe (ipc/messages.py: Ready, Exited); here they
become spans after the fact: fork, configure, container, module (deserialize or compile), seal (stdio,
confinement) under Create; instantiate, run and exit (to the supervisor's reaping) under Start.
Nothing of this runs when tracing is off: daemon.py wraps nothing then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from wasmvisor import errors
from wasmvisor.supervisor.rpc.service import Call, Handler, Service
from wasmvisor.supervisor.tasks.describe import TaskDescriber, module_of
from wasmvisor.supervisor.tasks.registry import TaskRegistry
from wasmvisor.supervisor.tasks.task import Task
from wasmvisor.tracing import Attributes, Span, Tracer

TASK_ID = "wasmvisor.task.id"
NAMESPACE = "wasmvisor.namespace"
POD = "wasmvisor.pod"
DIGEST = "wasmvisor.module.digest"
MODULE = "wasmvisor.module.path"
CREATE_PHASES = ("fork", "configure", "container", "module", "seal")
START_PHASES = ("instantiate", "run")


class TaskSpans:
    """Wraps Task API services in spans for one supervisor's registry."""

    def __init__(self, tracer: Tracer, registry: TaskRegistry, describer: TaskDescriber) -> None:
        self.tracer = tracer
        self.registry = registry
        self.describer = describer
        self._pending: set[asyncio.Task[None]] = set()

    def wrap(self, service: Service) -> Service:
        methods = {name: dataclasses.replace(m, handler=self._traced(service.name, name, m.handler))
                   for name, m in service.methods.items()}
        return Service(service.name, methods)

    def _traced(self, service: str, method: str, handler: Handler) -> Handler:
        name = f"{service}/{method}"

        async def traced(req: Any, call: Call) -> Any:
            task_id = getattr(req, "id", "")
            attributes: dict[str, str | int | float | bool] = {
                "rpc.system": "ttrpc", "rpc.service": service, "rpc.method": method,
                NAMESPACE: call.namespace or self.registry.namespace, POD: self.registry.group,
            }
            if task_id:
                attributes[TASK_ID] = task_id
            with self.tracer.span(name, attributes, carrier=call.metadata) as span:
                result = await handler(req, call)
                if task_id:
                    await self._after(method, task_id, span, attributes)
                return result

        return traced

    async def _after(self, method: str, task_id: str, span: Span, attributes: Attributes) -> None:
        """Attributes known once the call has run, and the worker's phases of Create and Start."""
        try:
            task = self.registry.get(task_id)
        except errors.NotFound:
            return  # deleted
        common = {k: attributes[k] for k in (TASK_ID, NAMESPACE, POD)}
        module, host_path = module_of(task)
        digest = await self.describer.digest(task, host_path)
        for key, value in ((MODULE, module), (DIGEST, digest)):
            if value:
                span.set_attribute(key, value)
                common[key] = value
        phases = getattr(task.instance, "phases", None)
        if not isinstance(phases, dict):
            return  # an Instance of the shim's own, which reports no phases
        if method == "Create":
            self._record(phases, CREATE_PHASES, common)
        elif method == "Start":
            # The run ends later: its spans are made when the exit is in, still under this span.
            waiting = asyncio.get_running_loop().create_task(self._after_exit(task, phases, common))
            self._pending.add(waiting)
            waiting.add_done_callback(self._pending.discard)

    async def _after_exit(self, task: Task, phases: dict[str, list[int]], common: Attributes) -> None:
        exit = await self.registry.wait(task)
        self._record(phases, START_PHASES, common)
        ended = phases.get("run", [exit.at_ns])[-1]
        self.tracer.record("worker/exit", ended, max(ended, time.time_ns()), {**common, "exit.status": exit.status})

    def _record(self, phases: dict[str, list[int]], names: tuple[str, ...], attributes: Attributes) -> None:
        for phase in names:
            times = phases.get(phase)
            if times and len(times) == 2:
                self.tracer.record(f"worker/{phase}", times[0], times[1], attributes)
