"""The supervisor process's first steps, taken before the Task API is even imported.

The bundle's `log` FIFO on stderr, the zygote's start, then process title, logging and
child-subreaper. The zygote is a second interpreter that imports wasmtime and the worker code
(~150 ms), and the first Create waits for it (spawns queue on the launcher's one thread behind the
warm-up): started here, it does so on the other core while this process imports asyncio, protobuf and
the Task API (daemon.py, ~200 ms), instead of after them. So only what the spawn needs comes before
it: stderr must be the log FIFO already (the zygote and its workers inherit their stderr from us);
title, logging setup and prctl (setproctitle; ctypes, through wasmvisor.linux.syscalls) follow it.
Nothing here imports `typing` or `dataclasses` for the same reason.
"""

from __future__ import annotations

import logging
import os
import sys

from wasmvisor import logs
from wasmvisor.ipc.zygote import WorkerLauncher, preload_for
from wasmvisor.linux.reaper import ChildReaper

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: see the module docstring
if TYPE_CHECKING:
    from wasmvisor.supervisor.config import Config
    from wasmvisor.supervisor.shim.cliargs import ShimArgs

log = logging.getLogger(__name__)

ZYGOTE_SPAWN_WAIT = 2.0
"""Seconds to wait for the zygote's process to exist before going on (its preload is not awaited)."""


class Prepared:
    """What `prepare` set up for `daemon.serve`."""

    __slots__ = ("group", "level", "launcher")

    def __init__(self, group: str, level: str, launcher: WorkerLauncher | None) -> None:
        self.group = group
        self.level = level
        self.launcher = launcher
        """None with the shim's own Instance class: it has no zygote."""


def prepare(args: ShimArgs, config: Config, engine: str, *, fork_zygote: bool = False,
            instance: str | None = None) -> Prepared:
    """Start the zygote (without waiting for its preload) with stderr on the log FIFO; then title,
    logging and subreaper.

    `fork_zygote`: this process was forked from the node's template (template.py) and has the
    zygote's preload imported: the zygote is a fork of it, ready at once, instead of a new
    interpreter. `instance`: the shim's own Instance class ("module:Class") runs the guests: no
    zygote, and no subreaper (that Instance reaps the processes it starts, if any)."""
    group = args.group or args.id
    level = "debug" if args.debug else config.default_log_level
    if not config.no_setup_logger:
        fd = logs.open_log_fifo(args.bundle or os.getcwd())
        if fd is not None:
            os.dup2(fd, 2)
            os.close(fd)
    launcher = None
    if instance is None:
        launcher = WorkerLauncher(preload=preload_for(engine), reaper=ChildReaper())
        if fork_zygote:
            launcher.fork_zygote()
        else:
            launcher.begin_warm_up(wait_spawned=ZYGOTE_SPAWN_WAIT)
    # The zygote preloads on the other core from here on.
    from setproctitle import setproctitle

    setproctitle(f"wasmvisor-shim {args.namespace}/{group}")
    if not config.no_setup_logger:
        logs.configure(sys.stderr, level, namespace=args.namespace, pod=group)
    if launcher is not None:
        become_subreaper()
    return Prepared(group, level, launcher)


def become_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): workers orphaned by a dying zygote become our children.

    Called just after the zygote's spawn: no worker is forked before the first Create.
    """
    from wasmvisor.linux import syscalls

    try:
        syscalls.set_child_subreaper()
    except OSError as exc:
        log.warning("cannot become a child subreaper: %s", os.strerror(exc.errno or 0))
