"""A worker that closes its pipe but does not end is SIGKILLed after the grace period."""

from __future__ import annotations

import asyncio
import signal

import pytest

from wasmvisor.ipc import messages
from wasmvisor.supervisor.tasks import instance
from wasmvisor.supervisor.tasks.instance import InstanceConfig, WorkerInstance


class HangingWorker:
    """Reports Exited(0), closes its pipe, then hangs until it receives SIGKILL."""

    pid = 4242

    def __init__(self) -> None:
        self.sent: list[int] = []
        self._lines: list[messages.Message] = [messages.Exited(code=0, at_ns=1)]
        self._killed = asyncio.Event()

    async def receive(self) -> messages.Message:
        if self._lines:
            return self._lines.pop(0)
        raise EOFError("closed")

    async def wait_exit(self) -> int:
        await self._killed.wait()
        return -signal.SIGKILL

    def kill(self, sig: int) -> None:
        self.sent.append(sig)
        if sig == signal.SIGKILL:
            self._killed.set()

    def close(self) -> None:
        pass


async def run_to_exit(worker: HangingWorker) -> tuple[list[int], int]:
    """Watch `worker` as the supervisor does until its exit: (signals sent to it, exit status)."""
    inst = WorkerInstance("t", InstanceConfig(namespace="ns", bundle="/b", rootfs="/b/rootfs"),
                          worker)  # type: ignore[arg-type]
    exit = await asyncio.wait_for(inst.wait(), 5)
    return worker.sent, exit.status


def test_worker_hanging_after_its_exit_is_killed_and_keeps_its_reported_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(instance, "EXIT_GRACE_SECONDS", 0.05)
    sent, status = asyncio.run(run_to_exit(HangingWorker()))
    assert sent == [signal.SIGKILL]
    assert status == 0, "the status the guest reported stands"


class ExecingWorker(HangingWorker):
    """Says it execs a native program, closes its pipe (close-on-exec), and ends by itself later."""

    def __init__(self) -> None:
        super().__init__()
        self._lines = [messages.Started(pid=self.pid, execs=True)]

    async def wait_exit(self) -> int:
        await asyncio.sleep(0.3)  # the program runs well past the grace
        return 3


def test_a_native_program_closing_the_pipe_at_exec_is_not_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instance, "EXIT_GRACE_SECONDS", 0.05)
    sent, status = asyncio.run(run_to_exit(ExecingWorker()))
    assert sent == []
    assert status == 3
