"""A new supervisor starts its zygote before it loads what only it needs (title, logging setup, prctl)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_the_zygote_is_spawned_before_typing_dataclasses_ctypes_and_setproctitle_load(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys
        from wasmvisor.supervisor.shim.cliargs import parse_args
        from wasmvisor.supervisor import daemon_setup
        from wasmvisor.supervisor.config import Config
        from wasmvisor.ipc import zygote

        seen = None
        real = zygote.WorkerLauncher.begin_warm_up

        def begin_warm_up(self, wait_spawned=0.0):
            global seen
            if seen is None:  # the spawn (warm_up() below calls this again to wait)
                seen = [m for m in ("typing", "dataclasses", "ctypes", "setproctitle") if m in sys.modules]
            return real(self, wait_spawned)

        zygote.WorkerLauncher.begin_warm_up = begin_warm_up
        args = parse_args(["-namespace", "ns", "-address", "/x", "-id", "order1", "serve"])
        prepared = daemon_setup.prepare(args, Config(), "wasmvisor.engines.wasmtime_engine:WasmtimeEngine")
        prepared.launcher.warm_up()
        prepared.launcher.close()
        print(" ".join(seen) or "-", prepared.group, "setproctitle" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["-", "order1", "True"]
