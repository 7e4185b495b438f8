"""A worker's cgroup join overlaps its first steps: Configure goes out at once, asking the worker to wait
for `Joined` before its container process exists; the supervisor joins it on a thread and then says
`Joined`. Create returns once the worker is Ready (hence in its cgroup). A join that fails fails Create
with its own error and ends the worker; a worker that fails reports its own error."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable

import pytest

from wasmvisor import errors
from wasmvisor.ipc import messages
from wasmvisor.supervisor.tasks.instance import InstanceConfig, WorkerInstance

CFG = InstanceConfig(namespace="ns", bundle="/b", rootfs="/b/rootfs")
WORKER, CONTAINER = 4001, 4002


class ScriptedWorker:
    """A WorkerHandle stand-in that behaves as a worker told to wait for its cgroup: it answers
    `first()` (Ready with the container process's pid) only after the supervisor sent Joined."""

    def __init__(self) -> None:
        self.pid = WORKER
        self.sent: list[messages.Message] = []
        self.killed: list[int] = []
        self.closed = False
        self._joined = asyncio.Event()
        self._said = False
        self._gone = asyncio.Event()

    def first(self) -> messages.Message:
        return messages.Ready(pid=CONTAINER)

    async def send(self, msg: messages.Message) -> None:
        self.sent.append(msg)
        if isinstance(msg, messages.Joined):
            self._joined.set()

    waits_for_join = True
    """False: it fails before its namespaces are entered, so before it would wait for `Joined`."""

    async def receive(self) -> messages.Message:
        if not self._said:
            self._said = True
            if not self.waits_for_join:
                return self.first()
            await asyncio.wait([asyncio.ensure_future(self._joined.wait()), asyncio.ensure_future(self._gone.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            if not self._gone.is_set():
                return self.first()
        await self._gone.wait()
        raise EOFError("closed")

    async def wait_exit(self) -> int:
        return -signal.SIGKILL

    def kill(self, sig: int) -> None:
        self.killed.append(sig)
        self._gone.set()

    def close(self) -> None:
        self.closed = True


class Launcher:
    """Hands out one scripted worker; records the Configure it was asked to send."""

    def __init__(self, worker: ScriptedWorker) -> None:
        self.worker = worker
        self.configured: list[messages.Configure] = []

    async def spawn(self, config: messages.Configure) -> ScriptedWorker:
        self.configured.append(config)
        return self.worker


def on_thread(join: Callable[[int], None]) -> Callable[[int], Awaitable[None]]:
    """`join` as TaskCgroup.add does it: the blocking write on a thread, awaited."""
    async def add(pid: int) -> None:
        await asyncio.to_thread(join, pid)
    return add


def test_the_worker_is_configured_at_once_and_told_when_it_is_in_its_cgroup() -> None:
    async def scenario() -> tuple[Launcher, list[int], bool, WorkerInstance]:
        worker = ScriptedWorker()
        launcher = Launcher(worker)
        joined: list[int] = []
        gate = threading.Event()

        def join(pid: int) -> None:  # blocking, as a write to cgroup.procs
            joined.append(pid)
            gate.wait(5)

        creating = asyncio.ensure_future(WorkerInstance.new("t", CFG, on_thread(join), launcher=launcher))  # type: ignore[arg-type]
        for _ in range(100):
            await asyncio.sleep(0.01)
            if joined:
                break
        waiting = not creating.done() and worker.sent == []  # configured, joining, not told yet
        gate.set()
        inst = await asyncio.wait_for(creating, 5)
        return launcher, joined, waiting, inst

    launcher, joined, waiting, inst = asyncio.run(scenario())
    assert launcher.configured[0].await_join is True
    assert waiting
    assert joined == [WORKER]  # once: the container process is forked after the join, inside the cgroup
    assert launcher.worker.sent == [messages.Joined()]
    assert inst.pid == CONTAINER


def test_without_a_cgroup_the_worker_does_not_wait() -> None:
    async def scenario() -> Launcher:
        worker = ScriptedWorker()
        worker._joined.set()  # as a worker whose Configure says not to wait
        launcher = Launcher(worker)
        await WorkerInstance.new("t", CFG, None, launcher=launcher)  # type: ignore[arg-type]
        return launcher

    launcher = asyncio.run(scenario())
    assert launcher.configured[0].await_join is False
    assert launcher.worker.sent == []


def test_a_join_that_fails_fails_create_with_its_error_and_kills_the_worker() -> None:
    async def scenario() -> ScriptedWorker:
        worker = ScriptedWorker()

        def join(pid: int) -> None:
            raise errors.Internal(f"cgroup /ns/t: cannot add pid {pid}")

        with pytest.raises(errors.Internal, match=f"cannot add pid {WORKER}"):
            await asyncio.wait_for(WorkerInstance.new("t", CFG, on_thread(join), launcher=Launcher(worker)), 5)  # type: ignore[arg-type]
        return worker

    worker = asyncio.run(scenario())
    assert worker.killed == [signal.SIGKILL] and worker.closed
    assert worker.sent == []


def test_a_worker_that_fails_its_set_up_reports_its_own_error_even_when_its_join_then_fails() -> None:
    class FailingWorker(ScriptedWorker):
        waits_for_join = False

        def first(self) -> messages.Message:
            return messages.Failed(code="INVALID_ARGUMENT", message="/x.wasm is a wasm module, and a wasm guest "
                                                                    "cannot have a tty")

    async def scenario() -> None:
        gate = threading.Event()

        def join(pid: int) -> None:  # the worker has failed and ended meanwhile: its pid is gone
            gate.wait(5)
            raise errors.Internal(f"cgroup /ns/t: cannot add pid {pid}: No such process")

        launcher = Launcher(FailingWorker())
        creating = asyncio.ensure_future(WorkerInstance.new("t", CFG, on_thread(join), launcher=launcher))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        gate.set()
        with pytest.raises(errors.InvalidArgument, match="cannot have a tty"):
            await asyncio.wait_for(creating, 5)

    asyncio.run(scenario())
