"""The supervisor process's first steps, taken before the Task API is even imported.

Process title, the bundle's `log` FIFO on stderr, child-subreaper, and the zygote's start. The zygote
is a second interpreter that imports wasmtime and the worker code (~150 ms); started here, it does so
on the other core while this process imports asyncio, protobuf and the Task API (daemon.py, ~200 ms),
instead of after them. It is spawned after stderr is the log FIFO: the zygote and its workers
inherit their stderr from us. The first Create waits for it: spawns queue on the launcher's one
thread behind the warm-up.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import NamedTuple

from setproctitle import setproctitle

from wasmvisor.ipc.launcher import WorkerLauncher, preload_for
from wasmvisor.supervisor import logs
from wasmvisor.supervisor.cliargs import ShimArgs
from wasmvisor.supervisor.config import Config

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
ZYGOTE_SPAWN_WAIT = 2.0
"""Seconds to wait for the zygote's process to exist before going on (its preload is not awaited)."""


class Prepared(NamedTuple):
    """What `prepare` set up for `daemon.serve`."""

    group: str
    level: str
    launcher: WorkerLauncher


def prepare(args: ShimArgs, config: Config, engine: str) -> Prepared:
    """Title, logging, subreaper; then start the zygote (without waiting for its preload)."""
    group = args.group or args.id
    setproctitle(f"wasmvisor-shim {args.namespace}/{group}")
    level = "debug" if args.debug else config.default_log_level
    if not config.no_setup_logger:
        fd = logs.open_log_fifo(args.bundle or os.getcwd())
        if fd is not None:
            os.dup2(fd, 2)
            os.close(fd)
        logs.configure(sys.stderr, level, namespace=args.namespace, pod=group)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
    launcher = WorkerLauncher(preload=preload_for(engine))
    launcher.begin_warm_up(wait_spawned=ZYGOTE_SPAWN_WAIT)
    return Prepared(group, level, launcher)
