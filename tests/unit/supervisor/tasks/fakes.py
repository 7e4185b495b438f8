"""Stand-ins for what the task registry is handed, so that the lifecycle runs in-process: an
Instance with no process (its exit comes when the test, or a kill, says so), a publisher that
records, a layer reader that finds none, and a cgroup that only counts."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import Message

from wasmvisor import errors
from wasmvisor.ipc.messages import LayerFile
from wasmvisor.spec import Spec, load_spec
from wasmvisor.supervisor.tasks.instance import Exit, Instance, InstanceConfig, OnForked, TaskIO
from wasmvisor.supervisor.tasks.registry import TaskRegistry
from wasmvisor.supervisor.tasks.task import CreateOpts

T = TypeVar("T")
ENDING_SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


class FakeInstance(Instance):
    """A guest with no process. `end(status)` is its exit; SIGKILL/SIGTERM/SIGINT end it with
    128+N; `hold_start` keeps Start in flight until `release_start`."""

    next_pid = 1000

    def __init__(self, id: str, cfg: InstanceConfig) -> None:
        FakeInstance.next_pid += 1
        self.id = id
        self.cfg = cfg
        self.pid = FakeInstance.next_pid
        self.exit: Exit | None = None
        self.signals: list[int] = []
        self.starts = 0
        self.deletes = 0
        self.hold_start = False
        self.start_error: errors.ShimError | None = None
        self.delete_error: Exception | None = None
        self._release = asyncio.Event()
        self._exited = asyncio.Event()
        self.execs: dict[str, FakeInstance] = {}
        self.exec_processes: dict[str, dict[str, Any]] = {}

    @classmethod
    async def new(cls, id: str, cfg: InstanceConfig, on_forked: OnForked | None = None) -> FakeInstance:
        inst = cls(id, cfg)
        if on_forked is not None:
            await on_forked(inst.pid)
        return inst

    def end(self, status: int) -> None:
        if self.exit is None:
            self.exit = Exit(pid=self.pid, status=status, at_ns=1_700_000_000_000_000_000 + self.pid)
            self._exited.set()

    def release_start(self) -> None:
        self._release.set()

    async def start(self) -> int:
        self.starts += 1
        if self.exit is not None:
            raise errors.FailedPrecondition(f"task {self.id} has already exited")
        if self.hold_start:
            await self._release.wait()
        if self.start_error is not None:
            raise self.start_error
        return self.pid

    def kill(self, signo: int) -> None:
        if self.exit is not None:
            raise errors.NotFound(f"process already finished: task {self.id}: not found")
        self.signals.append(signo)
        if signo in ENDING_SIGNALS:
            self.end(128 + signo)

    async def delete(self) -> None:
        self.deletes += 1
        if self.exit is None:
            self.end(128 + signal.SIGKILL)
        if self.delete_error is not None:
            error, self.delete_error = self.delete_error, None
            raise error

    async def wait(self) -> Exit:
        await self._exited.wait()
        assert self.exit is not None
        return self.exit

    async def exec(self, exec_id: str, process: Mapping[str, Any], stdio: TaskIO,
                   on_forked: OnForked | None = None) -> FakeInstance:
        """Another FakeInstance, kept in `execs` for the test to drive."""
        inst = await FakeInstance.new(f"{self.id} exec {exec_id}", self.cfg, on_forked)
        self.execs[exec_id] = inst
        self.exec_processes[exec_id] = dict(process)
        return inst


class FakeInstances:
    """The registry's instance factory: FakeInstances by task id, for the test to drive."""

    def __init__(self) -> None:
        self.made: dict[str, FakeInstance] = {}
        self.dead_on_arrival: int | None = None
        """When set, the next instance has exited with this status by the time `new` returns."""
        self.error: errors.ShimError | None = None

    async def __call__(self, id: str, cfg: InstanceConfig, on_forked: OnForked | None) -> FakeInstance:
        if self.error is not None:
            raise self.error
        inst = await FakeInstance.new(id, cfg, on_forked)
        if self.dead_on_arrival is not None:
            inst.end(self.dead_on_arrival)
            self.dead_on_arrival = None
        self.made[id] = inst
        return inst


class RecordingPublisher:
    """Every published event, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Message]] = []

    def publish(self, topic: str, event: Any) -> None:
        self.events.append((topic, event))

    def topics(self, container_id: str | None = None) -> list[str]:
        return [topic for topic, event in self.events
                if container_id is None or getattr(event, "container_id", None) == container_id]


class NoLayers:
    files: tuple[LayerFile, ...] = ()

    def after_ready(self) -> None:
        pass


class NoLayerReader:
    """containerd knows no wasm layers for any container."""

    async def for_container(self, task_id: str, bundle: str, rootfs: str, spec: Spec | None) -> NoLayers:
        return NoLayers()


class FakeCgroup:
    """A TaskCgroup's interface with nothing behind it; `oom_kill()` counts an OOM kill."""

    def __init__(self, on_oom: Callable[[], None]) -> None:
        self.on_oom = on_oom
        self.added: list[int] = []
        self.frozen = False
        self.closed = 0
        self.destroyed = 0
        self.updates: list[Any] = []
        self._ooms = 0
        self._reported = 0

    async def add(self, pid: int) -> None:
        self.added.append(pid)

    def watch_oom(self) -> None:
        self.watching = True

    def oom_kill(self) -> None:
        self._ooms += 1

    def check_oom(self) -> bool:
        if self._ooms <= self._reported:
            return False
        self._reported = self._ooms
        self.on_oom()
        return True

    @property
    def oom_killed(self) -> bool:
        return self._reported > 0

    async def freeze(self) -> None:
        self.frozen = True

    async def thaw(self) -> None:
        self.frozen = False

    def update(self, resources: Any) -> None:
        self.updates.append(resources)

    def pids(self) -> list[int]:
        return list(self.added)

    def destroy(self) -> None:
        self.destroyed += 1

    async def close(self) -> None:
        self.closed += 1


def write_bundle(path: Path, *, linux: bool = False) -> Path:
    """A bundle whose config.json runs /app.wasm; `linux` adds a linux section (so a cgroup)."""
    doc: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"args": ["/app.wasm"], "env": ["PATH=/"], "cwd": "/", "terminal": False},
        "root": {"path": "rootfs"},
    }
    if linux:
        doc["linux"] = {"cgroupsPath": "/wasmvisor-test/t", "resources": {}}
    path.mkdir(parents=True, exist_ok=True)
    (path / "rootfs").mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(doc))
    return path


def create_opts(bundle: Path) -> CreateOpts:
    return CreateOpts(bundle=str(bundle), spec=load_spec(str(bundle)))


def new_registry(instances: FakeInstances, events: RecordingPublisher) -> TaskRegistry:
    return TaskRegistry("ns", "pod", new_instance=instances, events=events, layers=NoLayerReader(),
                        engine="tests:Engine", log_level="debug")


async def turns(n: int = 20) -> None:
    """Let every ready callback and task run `n` times over (no clock involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


def run(coro: Awaitable[T]) -> T:
    """Run a scenario; one that hangs fails instead of hanging the suite."""

    async def main() -> T:
        return await asyncio.wait_for(coro, 10)

    return asyncio.run(main())
