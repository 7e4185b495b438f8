"""The zygote's shared wasmtime Engine (wasmtime_engine.zygote_preload): workers forked after it use it,
and can still compile with it (a process that never compiled stays safe to fork)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD_COMPILES = textwrap.dedent("""
    import os, sys
    from wasmvisor.engines import wasmtime_engine as w
    w.zygote_preload()
    shared_engine, shared_linker = w._SHARED[True]
    wat = '(module (func (export "_start")) ' + ' '.join(
        f'(func $f{i} (result i32) i32.const {i})' for i in range(3000)) + ')'
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            engine = w.WasmtimeEngine(cache=None)
            ok = engine.engine is shared_engine and engine._linker() is shared_linker
            module = w.wasmtime.Module(engine.engine, wat)  # compiles, in parallel, in the child
            shared_linker.instantiate_pre(module)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"child ended with {status}")
    serial = w.WasmtimeEngine(parallel_compilation=False, cache=None)
    assert serial.engine is not shared_engine, "another configuration gets its own Engine"
    print("ok")
""")


def test_workers_share_the_zygotes_engine_and_compile_with_it() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD_COMPILES], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


PRELOAD_LEAVES_COMPONENTS_OUT = textwrap.dedent("""
    import importlib, sys
    from wasmvisor.ipc.zygote import run_preload_hooks
    from wasmvisor.supervisor.shim.template_server import preload
    run_preload_hooks([importlib.import_module(n)
                       for n in preload("wasmvisor.engines.wasmtime_engine:WasmtimeEngine", environ={})])
    print(*(name in sys.modules for name in ("wasmtime", "wasmtime.component", "wasmvisor.engines.wasmtime_cli")))
""")


def test_the_node_preloads_wasmtime_but_leaves_the_component_api_to_the_workers_that_run_components() -> None:
    done = subprocess.run([sys.executable, "-c", PRELOAD_LEAVES_COMPONENTS_OUT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False"]


def test_without_the_preload_each_engine_makes_its_own() -> None:
    from wasmvisor.engines import wasmtime_engine as w

    assert True not in w._SHARED, "only a zygote (never the test process) runs the preload"
    a, b = w.WasmtimeEngine(cache=None), w.WasmtimeEngine(cache=None)
    assert a.engine is not b.engine
