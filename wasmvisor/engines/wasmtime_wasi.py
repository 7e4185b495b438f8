"""What the wasmtime engine's two guest kinds (core modules, components) share: the WASI context a
guest gets (argv, env, the preopens, stdio), the workload's limits on a Store (fuel, a time limit) and
wasmtime's errors as one line.

wasmtime-py gives both kinds the same `WasiConfig` (`Store.set_wasi`): a core module reads it through
WASI preview 1, a component through the WASI 0.2 interfaces `Linker.add_wasip2` defines.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import wasmtime

from wasmvisor.engines.base import TRAP_EXIT_CODE, ExitCode, RuntimeContext, Stdio, guest_env

log = logging.getLogger(__name__)


def wasi_config(ctx: RuntimeContext, stdio: Stdio) -> wasmtime.WasiConfig:
    """argv (argv[0] is the module path as the spec gave it, without `#func`), env, the
    preopens (by default the root as `/`: WorkloadOptions.guest_preopens), and stdio: a stream
    already on its standard fd is inherited, another fd is reopened through /proc/self/fd (fine
    for pipes, FIFOs and new files; a regular file would be truncated, which is why the worker
    passes 0, 1, 2)."""
    wasi = wasmtime.WasiConfig()
    wasi.argv = [ctx.entrypoint.source, *ctx.args[1:]]
    wasi.env = guest_env(ctx.envs, ctx.cwd)
    for preopen in ctx.options.guest_preopens():
        host = os.path.join(ctx.root, preopen.container_path.lstrip("/"))
        wasi.preopen_dir(host, preopen.guest_path, preopen.writable)
    if stdio.stdin == 0:
        wasi.inherit_stdin()
    elif stdio.stdin >= 0:
        wasi.stdin_file = f"/proc/self/fd/{stdio.stdin}"
    if stdio.stdout == 1:
        wasi.inherit_stdout()
    elif stdio.stdout >= 0:
        wasi.stdout_file = f"/proc/self/fd/{stdio.stdout}"
    if stdio.stderr == 2:
        wasi.inherit_stderr()
    elif stdio.stderr >= 0:
        wasi.stderr_file = f"/proc/self/fd/{stdio.stderr}"
    return wasi


def new_store(engine: wasmtime.Engine, ctx: RuntimeContext, stdio: Stdio) -> wasmtime.Store:
    """A fresh Store for one run of the guest: the memory limit of the spec, the WASI context, and
    the workload's fuel and time limit (the engine was made for them: WasmtimeEngine.with_settings)."""
    store = wasmtime.Store(engine)
    if ctx.memory_limit:
        store.set_limits(memory_size=ctx.memory_limit)
    store.set_wasi(wasi_config(ctx, stdio))
    limits = ctx.options
    if limits.fuel is not None:
        store.set_fuel(limits.fuel)
    if limits.time_limit_s is not None:
        # The guest traps at its next check (a loop's back edge, a call) once the timer bumps the epoch.
        store.set_epoch_deadline(1)
        timer = threading.Timer(limits.time_limit_s, engine.increment_epoch)
        timer.daemon = True
        timer.start()
    return store


def run_to_exit(ctx: RuntimeContext, run: Callable[[], int]) -> ExitCode:
    """`run()`'s code, or the guest's own exit code (proc_exit, wasi:cli/exit), or 137 for a trap
    (its reason: the time limit, fuel, or another trap)."""
    try:
        return ExitCode(run())
    except wasmtime.ExitTrap as exc:
        return ExitCode(exc.code & 0xFF)
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        return _trapped(ctx, exc)


def _trapped(ctx: RuntimeContext, exc: Exception) -> ExitCode:
    source, limits = ctx.entrypoint.source, ctx.options
    code = getattr(exc, "trap_code", None)
    if code == wasmtime.TrapCode.INTERRUPT and limits.time_limit_s is not None:
        log.warning("guest %s: time limit of %gs passed (epoch interruption): ended with %d", source,
                    limits.time_limit_s, TRAP_EXIT_CODE)
        return ExitCode(TRAP_EXIT_CODE, "time limit")
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        log.warning("guest %s: out of fuel (%d units): ended with %d", source, limits.fuel, TRAP_EXIT_CODE)
        return ExitCode(TRAP_EXIT_CODE, "fuel")
    log.warning("guest %s trapped: %s", source, one_line(str(exc)))
    return ExitCode(TRAP_EXIT_CODE, "trap")


def one_line(message: str) -> str:
    """A wasmtime error (head, backtrace, `Caused by:` list) as one line: causes first."""
    lines = [line.strip() for line in message.strip().splitlines()]
    if "Caused by:" not in lines:
        return "; ".join(line for line in lines if line)
    at = lines.index("Caused by:")
    head, frames = lines[0], [f for f in lines[1:at] if f]
    causes = [c.split(": ", 1)[1] if c[:1].isdigit() and ": " in c else c for c in lines[at + 1 :] if c]
    if head.startswith("error while executing at wasm backtrace"):
        text = ": ".join(causes)
        if frames:
            frame = frames[0].split(":", 1)[1].strip() if ":" in frames[0] else frames[0]
            text += f" (at {' '.join(frame.split())})"
        return text
    return ": ".join([head, *causes])
