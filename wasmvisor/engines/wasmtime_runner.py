"""What the compiled runner (wasmvisor/worker/runner.c) needs to run a core module in place of this
process, and whether it can: a plain WASI preview 1 module, `_start`, the default engine settings
(no fuel, no time limit, no `wasmtime.*` setting: the runner makes a default Engine, which must
match the one that compiled the cached module), loaded from a file of the module cache.

The route decision and the plan's bytes are pure functions; the worker (worker/runner_exec.py) opens
the fds and execs the runner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wasmvisor.engines.base import RuntimeContext, guest_env

RUNNER_ENV = "WASMVISOR_RUNNER"
"""Set to "0", the worker runs every guest itself, in Python."""


@dataclass(frozen=True)
class RunnerJob:
    """A prepared core module as the runner would run it."""

    source: str
    """The module's path as the spec names it (the guest's argv[0], and the name in a trap's note)."""
    func: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    preopens: tuple[tuple[str, str, bool], ...]
    """(path in the container's root, path the guest sees, writable)."""
    memory_limit: int
    module_file: str | None
    """The verified module-cache entry the module was loaded from (None: compiled in memory)."""
    engine_settings: str
    """WorkloadOptions.engine_key(): "" for the default engine."""


def job_of(ctx: RuntimeContext, module_file: str | None) -> RunnerJob:
    """The runner's job for a core module prepared for `ctx` (pure)."""
    return RunnerJob(
        source=ctx.entrypoint.source,
        func=ctx.entrypoint.func,
        args=(ctx.entrypoint.source, *ctx.args[1:]),
        env=tuple(guest_env(ctx.envs, ctx.cwd)),
        preopens=tuple((p.container_path, p.guest_path, p.writable) for p in ctx.options.guest_preopens()),
        memory_limit=ctx.memory_limit or 0,
        module_file=module_file,
        engine_settings=ctx.options.engine_key(),
    )


def runner_refusal(job: RunnerJob | None, runner_present: bool, env: Mapping[str, str]) -> str | None:
    """Why the Python worker runs this guest itself, or None when the runner does (pure)."""
    if env.get(RUNNER_ENV) == "0":
        return f"{RUNNER_ENV}=0"
    if not runner_present:
        return "no runner binary"
    if job is None:
        return "not a core module run by wasmtime-py"
    if job.engine_settings:
        return f"engine settings {job.engine_settings}"
    if job.func != "_start":
        return f"entrypoint function {job.func}"
    if job.module_file is None:
        return "module not in the module cache"
    return None


def plan_bytes(job: RunnerJob, fields: Sequence[tuple[str, str]]) -> bytes:
    """The runner's plan (runner.c, "The plan"): `fields` (lib, module, fds...) then the guest's
    source, memory limit, args, env and preopens, NUL-separated (pure)."""
    items: list[str] = []
    for key, value in (*fields, ("source", job.source), ("func", job.func), ("memory", str(job.memory_limit))):
        items += [key, value]
    for arg in job.args:
        items += ["arg", arg]
    for name, value in job.env:
        items += ["env", f"{name}={value}"]
    for container_path, guest_path, writable in job.preopens:
        host = "/" + container_path.lstrip("/")
        items += ["preopen", host, guest_path, "1" if writable else "0"]
    for item in items:
        if "\0" in item:
            raise ValueError(f"runner plan: NUL in {item[:60]!r}")
    return b"".join(item.encode() + b"\0" for item in items)


def wasmtime_library() -> str:
    """The path of the wasmtime C library wasmtime-py loaded (the runner dlopens the same)."""
    from wasmtime import _ffi

    return str(_ffi.dll._name)
