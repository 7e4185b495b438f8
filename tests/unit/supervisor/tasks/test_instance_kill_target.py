"""Kill reaches the container process (the pid Ready reported, child of the relay), not the relay
the worker stayed as: SIGSTOP stops the container itself, as runc's kill stops the container's init."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from wasmvisor.ipc import messages
from wasmvisor.supervisor.tasks.instance import InstanceConfig, WorkerInstance

RELAY = """
import os, sys, time
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os.waitpid(child, 0)
"""


class RelayHandle:
    """A WorkerHandle stand-in for a relay process: says Ready(pid of the container process)."""

    def __init__(self, proc: subprocess.Popen[str], ready_pid: int) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.sent: list[int] = []
        self._lines: list[messages.Message] = [messages.Ready(pid=ready_pid)]
        self._gone = asyncio.Event()

    async def receive(self) -> messages.Message:
        if self._lines:
            return self._lines.pop(0)
        await self._gone.wait()
        raise EOFError("closed")

    async def wait_exit(self) -> int:
        return -signal.SIGKILL

    def kill(self, sig: int) -> None:
        self.sent.append(sig)

    def close(self) -> None:
        pass


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def kill_through_instance(ready_pid_of: str, sig: int) -> tuple[list[int], subprocess.Popen[str], int]:
    """(signals the relay handle got, the relay, container pid) after `inst.kill(sig)`."""
    proc = subprocess.Popen([sys.executable, "-c", RELAY], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    with proc.stdout:
        child = int(proc.stdout.readline())
    ready_pid = child if ready_pid_of == "child" else os.getpid()

    async def scenario() -> list[int]:
        handle = RelayHandle(proc, ready_pid)
        inst = WorkerInstance("box", InstanceConfig(namespace="ns", bundle="/b", rootfs="/b/rootfs"),
                              handle)  # type: ignore[arg-type]
        await inst._ready
        inst.kill(sig)
        handle._gone.set()
        await inst.wait()
        return handle.sent

    try:
        sent = asyncio.run(scenario())
    except BaseException:
        os.kill(child, signal.SIGKILL)
        proc.kill()
        raise
    return sent, proc, child


def test_sigstop_stops_the_container_process_and_not_its_relay() -> None:
    sent, relay, child = kill_through_instance("child", signal.SIGSTOP)
    try:
        assert sent == []
        assert eventually(lambda: state(child) == "T")
        assert state(relay.pid) != "T"
    finally:
        os.kill(child, signal.SIGKILL)
        relay.wait(10)  # it reaps the child and exits


def test_a_ready_pid_that_is_not_the_relays_child_is_not_signalled() -> None:
    sent, relay, child = kill_through_instance("stranger", signal.SIGTERM)
    try:
        assert sent == [signal.SIGTERM], "the relay gets it, to forward"
    finally:
        os.kill(child, signal.SIGKILL)
        relay.wait(10)
