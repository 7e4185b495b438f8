"""A stand-in worker entry: reports (as Ready.pid) how many objects the zygote froze, then exits."""

from __future__ import annotations

import gc
import os

from wasmvisor.ipc.messages import Ready, encode


def run(fd: int) -> None:
    os.write(fd, encode(Ready(pid=gc.get_freeze_count())))
    os._exit(0)
