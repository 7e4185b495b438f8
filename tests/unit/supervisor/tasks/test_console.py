"""The supervisor's side of a terminal: what the process writes to its pty reaches the stdout FIFO,
what the client writes to the stdin FIFO reaches the process, the window size is set on the pty, and
the end of the process's output closes the stdout FIFO (its reader sees EOF)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from wasmvisor.linux.pty import window_size
from wasmvisor.supervisor.tasks.console import Console

from .fakes import run


async def read_until(fd: int, want: bytes, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    got = b""
    deadline = loop.time() + timeout
    while True:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            if loop.time() > deadline:
                raise AssertionError(f"{want!r} not read from fd {fd} (got {got!r})") from None
            await asyncio.sleep(0.01)
            continue
        got += data
        if not data or (want and want in got):  # want=b"": read on to EOF
            return got


def test_a_console_copies_both_ways_resizes_and_ends_with_its_process(tmp_path: Path) -> None:
    stdin, stdout = tmp_path / "stdin", tmp_path / "stdout"
    os.mkfifo(stdin)
    os.mkfifo(stdout)

    async def scenario() -> None:
        console = Console()
        process_end = os.open(console.path, os.O_RDWR | os.O_NOCTTY)  # what the worker opens
        reader = os.open(stdout, os.O_RDONLY | os.O_NONBLOCK)  # the client's ends
        console.start(str(stdin), str(stdout), "task t")
        writer = os.open(stdin, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(process_end, b"from the process\n")
            assert b"from the process" in await read_until(reader, b"from the process")
            os.write(writer, b"typed\n")
            os.set_blocking(process_end, False)
            assert b"typed" in await read_until(process_end, b"typed")
            console.resize(120, 40)
            assert window_size(process_end) == (120, 40)
            os.close(process_end)  # the process has ended: the master reads EIO
            process_end = -1
            await console.drained(timeout=10)
            console.close()
            await read_until(reader, b"", timeout=5)  # returns at EOF only (no writer is left), else fails
        finally:
            for fd in (process_end, reader, writer):
                if fd >= 0:
                    os.close(fd)
            console.close()

    run(scenario())
