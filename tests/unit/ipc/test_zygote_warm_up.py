"""The zygote can be started before the supervisor imports its Task API, and is started only once."""

from __future__ import annotations

import os

from wasmvisor.ipc.zygote import WORKER_ENTRY, WorkerLauncher, preload_for


def test_preload_names_wasmtime_the_worker_and_the_engine_module() -> None:
    assert preload_for("my.engines.fast:FastEngine") == ("wasmtime", WORKER_ENTRY, "my.engines.fast")


def test_begin_warm_up_spawns_the_zygote_once_and_warm_up_waits_for_that_start() -> None:
    launcher = WorkerLauncher(preload=("json",))
    try:
        first = launcher.begin_warm_up(wait_spawned=30)
        pid = launcher.zygote_pid
        assert pid is not None  # its process exists already; its preload may still be running
        assert launcher.begin_warm_up() is first
        seconds = launcher.warm_up()
        assert seconds == first.result() and seconds > 0
        assert launcher.zygote_pid == pid
        os.kill(pid, 0)
    finally:
        launcher.close()
    assert launcher.zygote_pid is None
