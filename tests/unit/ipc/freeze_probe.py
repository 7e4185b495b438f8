"""A stand-in worker entry: reads its Configure line as a real worker does, reports (as
Ready.pid) how many objects the zygote froze, then exits."""

from __future__ import annotations

import gc
import os

from wasmvisor.ipc.messages import Ready, encode


def run(fd: int) -> None:
    # The supervisor writes Configure right after the fork; ending before it is read would
    # make that write fail (ECONNRESET) instead of testing the freeze.
    received = b""
    while not received.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        received += chunk
    os.write(fd, encode(Ready(pid=gc.get_freeze_count())))
    os._exit(0)
