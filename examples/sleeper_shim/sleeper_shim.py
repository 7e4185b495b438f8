"""An instance-based shim built on wasmvisor: `ctr run --runtime io.containerd.sleeper.v1 IMAGE ID
sleeper SECONDS` prints `sleeping SECONDS s` and sleeps. Its Instance runs each container as a
`sleep` subprocess of the supervisor on the host: no zygote, no worker, no rootfs, no namespaces.
The supervisor still serves the Task API, publishes the events and keeps the exit statuses."""

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable

import wasmvisor

# The process exists from Create on (as runc's init does) and runs `sleep` once told to start.
SCRIPT = 'read go && echo "sleeping $1 s" && exec sleep "$1"'


class SleeperInstance(wasmvisor.Instance):
    def __init__(self, id: str, proc: asyncio.subprocess.Process) -> None:
        self.id = id
        self.pid = proc.pid
        self.proc = proc
        self.exit: wasmvisor.Exit | None = None
        self.ended = asyncio.get_running_loop().create_task(self._wait_process())

    @classmethod
    async def new(cls, id: str, cfg: wasmvisor.InstanceConfig,
                  on_forked: Callable[[int], None] | None = None) -> "SleeperInstance":
        with open(os.path.join(cfg.bundle, "config.json")) as f:
            args = json.load(f)["process"]["args"]
        seconds = args[-1] if len(args) > 1 else "1"
        # containerd's reader has the stdout FIFO open already; opening it may still block a moment.
        out = await asyncio.to_thread(open, cfg.stdout, "wb") if cfg.stdout else None
        try:
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", SCRIPT, "sleeper", seconds, stdin=asyncio.subprocess.PIPE,
                stdout=out or asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
        finally:
            if out is not None:
                out.close()
        if on_forked is not None:
            on_forked(proc.pid)  # into the container's cgroup, when it has one
        return cls(id, proc)

    async def _wait_process(self) -> None:
        code = await self.proc.wait()
        self.exit = wasmvisor.Exit(pid=self.pid, status=128 - code if code < 0 else code, at_ns=time.time_ns())

    async def start(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()
        self.proc.stdin.close()
        return self.pid

    def kill(self, signo: int) -> None:
        if self.exit is None:
            self.proc.send_signal(signo)

    async def delete(self) -> None:
        if self.exit is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.ended

    async def wait(self) -> wasmvisor.Exit:
        await asyncio.shield(self.ended)
        assert self.exit is not None
        return self.exit


def main() -> None:
    """Console script `containerd-shim-sleeper-v1`."""
    wasmvisor.shim_main(instance="sleeper_shim:SleeperInstance", name="sleeper")
