"""What the node's template preloads is all a new group's supervisor imports on its way to the first Create:
an import after the fork runs the import machinery in that process for the first time and writes to pages
it shares with the template and its zygote (supervisor/shim/template_server.py, PRELOAD)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import importlib, sys
from wasmvisor.ipc.zygote import WorkerLauncher, preload_for
from wasmvisor.linux.reaper import ChildReaper
from wasmvisor.supervisor.shim.template_server import preload

engine = "wasmvisor.engines.wasmtime_engine:WasmtimeEngine"
for name in preload(engine, environ={}):
    importlib.import_module(name)
before = set(sys.modules)

# What a forked supervisor does before its first Create that imports lazily: its zygote launcher
# (daemon_setup.prepare) and the task's cgroup (registry: open_cgroup), on either hierarchy.
WorkerLauncher(preload=preload_for(engine), reaper=ChildReaper())
from wasmvisor.cgroups import open_cgroup
for version in (1, 2):
    open_cgroup("/wv-test/pod", "ns", "task", root=sys.argv[1], version=version)
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_a_supervisor_forked_from_the_template_imports_nothing_before_its_first_create(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == []
