"""The Sandbox API (`containerd.runtime.sandbox.v1.Sandbox`), served beside the Task API when containerd
2.x's shim sandboxer hands the pod to the supervisor (`sandboxer = "shim"`; protocol reference, section 5).

What containerd 2.1's controller (plugins/sandbox/controller.go) sends and reads: CreateSandbox (bundle
without config.json, PodSandboxConfig options, netns path), StartSandbox (its pid and created_at become
the sandbox's: the supervisor's), Platform, StopSandbox (timeout_secs, 0 when none is given; NotFound
and Unavailable are tolerated), WaitSandbox (blocks until the pod stops), SandboxStatus (CRI reads
SANDBOX_READY / SANDBOX_NOTREADY), PingSandbox, ShutdownSandbox (then it closes the connection and runs
the binary's `delete`), SandboxMetrics (a containerd.types.Metric). There is no UpdateSandbox RPC.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Protocol

from google.protobuf.any_pb2 import Any as AnyPb

from wasmvisor import cgroups, errors, logs
from wasmvisor.cgroups import Cgroup
from wasmvisor.proto.containerd.runtime.sandbox.v1 import sandbox_pb2 as pb
from wasmvisor.proto.containerd.types import metrics_pb2, platform_pb2
from wasmvisor.supervisor.pods import config as pod_config
from wasmvisor.supervisor.pods import namespaces
from wasmvisor.supervisor.pods.sandbox import Pod
from wasmvisor.supervisor.rpc.service import Call
from wasmvisor.supervisor.tasks.events import timestamp
from wasmvisor.supervisor.tasks.registry import TaskRegistry
from wasmvisor.supervisor.tasks.task import Task

log = logging.getLogger(__name__)

SERVICE = "containerd.runtime.sandbox.v1.Sandbox"
KILL_WAIT_SECONDS = 10.0
"""How long StopSandbox waits for the pod's containers after SIGKILL (a worker dies in milliseconds)."""
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class Lifetime(Protocol):
    """What the Sandbox API tells the supervisor's lifetime (lifetime.py): the sandbox's Create has come
    (its claim is settled); the sandbox is shut down (the supervisor ends once nothing is left)."""

    def arrived(self, task_id: str) -> None: ...

    def shutdown(self, task_id: str) -> None: ...


class SandboxService:
    """The one pod sandbox of a supervisor: made by CreateSandbox, ended by ShutdownSandbox."""

    def __init__(self, registry: TaskRegistry, lifetime: Lifetime, *, namespace: str, pid: int, started_at_ns: int,
                 enter: Callable[[namespaces.PodNamespaces, str], None] = namespaces.enter) -> None:
        self.registry = registry
        self.lifetime = lifetime
        self.namespace = namespace
        self.pid = pid
        self.started_at_ns = started_at_ns
        self.enter = enter
        self.pod: Pod | None = None
        self._entered = False
        """The main thread holds a pod's namespaces: a supervisor serves one pod in its life."""

    def held(self) -> int:
        """1 while a sandbox exists (the Lifetime counts it as a task), else 0."""
        return 0 if self.pod is None else 1

    def _pod(self, method: str, sandbox_id: str) -> Pod:
        if not sandbox_id:
            raise errors.InvalidArgument(f"{method}: sandbox id is empty")
        if self.pod is None or self.pod.id != sandbox_id:
            raise errors.NotFound(f"{method}: sandbox {sandbox_id}: not found")
        return self.pod

    async def CreateSandbox(self, req: pb.CreateSandboxRequest, call: Call) -> pb.CreateSandboxResponse:
        what = f"create sandbox {req.sandbox_id}"
        if not req.sandbox_id:
            raise errors.InvalidArgument("create sandbox: sandbox id is empty")
        if self.pod is not None:
            raise errors.AlreadyExists(f"{what}: this supervisor serves sandbox {self.pod.id} already")
        if self._entered:
            raise errors.FailedPrecondition(f"{what}: this supervisor served another sandbox, and holds its "
                                            "namespaces still")
        config = pod_config.parse(req.options if req.HasField("options") else None, req.sandbox_id)
        plan = namespaces.plan(config, req.netns_path, req.sandbox_id)
        made = self._make_cgroup(config.cgroup_parent, req.sandbox_id)
        pod = Pod(id=req.sandbox_id, bundle=req.bundle_path, config=config, namespaces=plan, made_cgroup=made)
        self._entered = True
        try:
            self.enter(plan, req.sandbox_id)
        except BaseException:
            if made:
                self._remove_cgroup(pod)
            raise
        self.pod = pod
        # `start`'s claim is settled only now that the sandbox counts itself: a CreateSandbox that failed
        # leaves the claim, which ShutdownSandbox, `delete` or its expiry settles.
        self.lifetime.arrived(req.sandbox_id)
        log.info("created sandbox %s (pod %s/%s, network %s)", req.sandbox_id, config.namespace, config.name,
                 req.netns_path or "of the node", extra={logs.FIELDS_ATTR: {"pod": req.sandbox_id}})
        return pb.CreateSandboxResponse()

    async def StartSandbox(self, req: pb.StartSandboxRequest, call: Call) -> pb.StartSandboxResponse:
        pod = self._pod("start sandbox", req.sandbox_id)
        pod.start()
        log.info("started sandbox %s", pod.id, extra={logs.FIELDS_ATTR: {"pod": pod.id}})
        return pb.StartSandboxResponse(pid=self.pid, created_at=timestamp(self.started_at_ns))

    async def Platform(self, req: pb.PlatformRequest, call: Call) -> pb.PlatformResponse:
        self._pod("platform", req.sandbox_id)
        machine = os.uname().machine
        return pb.PlatformResponse(platform=platform_pb2.Platform(os="linux",
                                                                  architecture=GOARCH.get(machine, machine)))

    async def StopSandbox(self, req: pb.StopSandboxRequest, call: Call) -> pb.StopSandboxResponse:
        pod = self._pod("stop sandbox", req.sandbox_id)
        await self._end_tasks(float(req.timeout_secs), pod.id)
        pod.stop()
        log.info("stopped sandbox %s", pod.id, extra={logs.FIELDS_ATTR: {"pod": pod.id}})
        return pb.StopSandboxResponse()

    async def WaitSandbox(self, req: pb.WaitSandboxRequest, call: Call) -> pb.WaitSandboxResponse:
        pod = self._pod("wait sandbox", req.sandbox_id)
        await pod.stopped.wait()
        return pb.WaitSandboxResponse(exit_status=pod.exit_status, exited_at=timestamp(pod.exited_at_ns))

    async def SandboxStatus(self, req: pb.SandboxStatusRequest, call: Call) -> pb.SandboxStatusResponse:
        pod = self._pod("sandbox status", req.sandbox_id)
        info = {"containers": str(len(self.registry.tasks(all=False)))}
        if req.verbose:
            info.update(netns=pod.namespaces.netns_path, hostname=pod.namespaces.hostname,
                        cgroup_parent=pod.config.cgroup_parent)
        return pb.SandboxStatusResponse(
            sandbox_id=pod.id, pid=self.pid, state=pod.state, info=info,
            created_at=timestamp(self.started_at_ns), exited_at=timestamp(pod.exited_at_ns))

    async def PingSandbox(self, req: pb.PingRequest, call: Call) -> pb.PingResponse:
        self._pod("ping sandbox", req.sandbox_id)
        return pb.PingResponse()

    async def ShutdownSandbox(self, req: pb.ShutdownSandboxRequest, call: Call) -> pb.ShutdownSandboxResponse:
        if self.pod is None and req.sandbox_id:
            # containerd 2.1 sends it after a failed CreateSandbox too: nothing was made, only the claim is left.
            self.lifetime.shutdown(req.sandbox_id)
            return pb.ShutdownSandboxResponse()
        pod = self._pod("shutdown sandbox", req.sandbox_id)
        await self._end_tasks(0.0, pod.id)
        for task in self.registry.tasks():
            try:
                await self.registry.delete(task.id)
            except errors.ShimError as exc:
                log.warning("shutdown sandbox %s: delete task %s: %s", pod.id, task.id, exc.message)
        pod.stop()
        if pod.made_cgroup:
            self._remove_cgroup(pod)
        self.pod = None
        log.info("shut sandbox %s down", pod.id, extra={logs.FIELDS_ATTR: {"pod": pod.id}})
        # The supervisor ends after the Lifetime's linger, not at once: containerd 2.1's ttrpc client, seeing
        # the answer and the connection's close together, may report `ttrpc: closed` (Go's select picks
        # either), and RemovePodSandbox then fails for good ("failed to shutdown sandbox"). containerd
        # closes the connection itself right after the answer.
        self.lifetime.shutdown(pod.id)
        return pb.ShutdownSandboxResponse()

    async def SandboxMetrics(self, req: pb.SandboxMetricsRequest, call: Call) -> pb.SandboxMetricsResponse:
        pod = self._pod("sandbox metrics", req.sandbox_id)
        cgroup = self._cgroup(pod.config.cgroup_parent, pod.id)
        if cgroup is None or not cgroup.exists():
            raise errors.NotFound(f"sandbox metrics {pod.id}: the pod has no cgroup "
                                  f"({pod.config.cgroup_parent or 'no cgroup parent given'})")
        try:
            data = cgroup.metrics()
        except OSError as exc:
            raise errors.Internal(f"sandbox metrics {pod.id}: cgroup {pod.config.cgroup_parent}: {exc}") from None
        metric = metrics_pb2.Metric(timestamp=timestamp(time.time_ns()), id=pod.id,
                                    data=AnyPb(type_url=cgroup.metrics_type, value=data.SerializeToString()))
        return pb.SandboxMetricsResponse(metrics=metric)

    def _cgroup(self, parent: str, sandbox_id: str) -> Cgroup | None:
        return cgroups.open_cgroup(parent, self.namespace, sandbox_id) if parent else None

    def _make_cgroup(self, parent: str, sandbox_id: str) -> bool:
        """Make the pod's cgroup parent when the kubelet has not (True if made here)."""
        cgroup = self._cgroup(parent, sandbox_id)
        if cgroup is None or cgroup.exists():
            return False
        cgroup.create()
        return True

    def _remove_cgroup(self, pod: Pod) -> None:
        cgroup = self._cgroup(pod.config.cgroup_parent, pod.id)
        if cgroup is None:
            return
        try:
            cgroup.remove()
        except errors.ShimError as exc:
            log.warning("shutdown sandbox %s: %s", pod.id, exc.message)

    async def _end_tasks(self, grace: float, sandbox_id: str) -> None:
        """End every container of the pod: SIGTERM and `grace` seconds (none when 0), then SIGKILL."""
        alive = self.registry.tasks(all=False)
        if grace > 0 and alive:
            await self._signal(alive, signal.SIGTERM, sandbox_id)
            await asyncio.wait([asyncio.ensure_future(self.registry.wait(t)) for t in alive], timeout=grace)
        alive = self.registry.tasks(all=False)
        if alive:
            await self._signal(alive, signal.SIGKILL, sandbox_id)
            await asyncio.wait([asyncio.ensure_future(self.registry.wait(t)) for t in alive],
                               timeout=KILL_WAIT_SECONDS)

    async def _signal(self, tasks: list[Task], signo: int, sandbox_id: str) -> None:
        for task in tasks:
            try:
                await self.registry.kill(task, signo, all=True)
            except errors.ShimError as exc:  # ended meanwhile: NotFound
                log.debug("stop sandbox %s: signal %d to %s: %s", sandbox_id, signo, task.id, exc.message)
