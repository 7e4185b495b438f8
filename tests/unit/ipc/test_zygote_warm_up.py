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


FORKED_ZYGOTE = """
import json, os, time
from wasmvisor.ipc.zygote import WorkerLauncher
launcher = WorkerLauncher(preload=("json",))
pid = launcher.fork_zygote()
seconds = launcher.warm_up()
time.sleep(0.3)  # a ping's child would have been forked by now
with open(f"/proc/{pid}/task/{pid}/children") as f:
    children = f.read().split()
alive = os.path.exists(f"/proc/{pid}")
launcher.close()
print(json.dumps({"seconds": seconds, "children": children, "alive": alive}))
"""


def test_a_zygote_forked_from_a_preloaded_process_is_ready_at_once_and_forks_nothing_until_asked() -> None:
    # A supervisor forked from the template forks its zygote from itself: that zygote has its preload,
    # and a ping (a fork and an exit) would only delay the group's first worker.
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FORKED_ZYGOTE], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"seconds": 0.0, "children": [], "alive": True}
