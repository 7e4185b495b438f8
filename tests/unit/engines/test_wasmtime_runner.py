"""Which guests the compiled runner runs, and the plan it gets (engines/wasmtime_runner.py): pure."""

from __future__ import annotations

import dataclasses

import pytest

from wasmvisor.engines.base import Entrypoint, RuntimeContext
from wasmvisor.engines.wasmtime_runner import RUNNER_ENV, RunnerJob, job_of, plan_bytes, runner_refusal
from wasmvisor.engines.workload import Preopen, WorkloadOptions

JOB = RunnerJob(source="/app.wasm", func="_start", args=("/app.wasm", "-v"), env=(("A", "1"),),
                preopens=(("/", "/", True),), memory_limit=0, module_file="/cache/k.cwasm", engine_settings="")


def context(**options: object) -> RuntimeContext:
    return RuntimeContext(args=["/app.wasm#_start", "x"], envs=["A=1", "B=two=2"], cwd="/work",
                          entrypoint=Entrypoint(name="app", source="/app.wasm", host_path="/r/app.wasm", func="_start"),
                          root="/", memory_limit=1 << 20, options=WorkloadOptions(**options))  # type: ignore[arg-type]


def test_a_plain_module_from_the_cache_goes_to_the_runner() -> None:
    assert runner_refusal(JOB, runner_present=True, env={}) is None
    assert runner_refusal(JOB, runner_present=True, env={RUNNER_ENV: "1"}) is None


@pytest.mark.parametrize(("job", "present", "env", "why"), [
    (JOB, True, {RUNNER_ENV: "0"}, "WASMVISOR_RUNNER=0"),
    (JOB, False, {}, "no runner binary"),
    (None, True, {}, "not a core module run by wasmtime-py"),
    (dataclasses.replace(JOB, engine_settings="consume_fuel"), True, {}, "engine settings consume_fuel"),
    (dataclasses.replace(JOB, engine_settings="epoch_interruption"), True, {}, "engine settings epoch_interruption"),
    (dataclasses.replace(JOB, func="serve"), True, {}, "entrypoint function serve"),
    (dataclasses.replace(JOB, module_file=None), True, {}, "module not in the module cache"),
])
def test_everything_else_stays_with_the_python_worker(job: RunnerJob | None, present: bool, env: dict[str, str],
                                                       why: str) -> None:
    assert runner_refusal(job, runner_present=present, env=env) == why


def test_the_job_is_what_the_python_worker_gives_wasi() -> None:
    job = job_of(context(), "/cache/k.cwasm")
    assert job.args == ("/app.wasm", "x")
    assert job.env == (("A", "1"), ("B", "two=2"), ("PWD", "/work"))
    assert job.preopens == (("/", "/", True),)
    assert (job.memory_limit, job.engine_settings) == (1 << 20, "")


def test_fuel_or_a_time_limit_make_engine_settings_and_keep_python() -> None:
    assert job_of(context(fuel=10), None).engine_settings == "consume_fuel"
    assert job_of(context(time_limit_s=1.0), None).engine_settings == "epoch_interruption"


def test_the_plan_is_nul_separated_keys_and_values() -> None:
    job = dataclasses.replace(JOB, preopens=(("/data", "/d", False), ("/", "/", True)))
    plan = plan_bytes(job, [("lib", "usr/lib/libwasmtime.so"), ("channel", "5")])
    assert plan.split(b"\0")[:-1] == [
        b"lib", b"usr/lib/libwasmtime.so", b"channel", b"5", b"source", b"/app.wasm", b"func", b"_start",
        b"memory", b"0", b"arg", b"/app.wasm", b"arg", b"-v", b"env", b"A=1",
        b"preopen", b"/data", b"/d", b"0", b"preopen", b"/", b"/", b"1",
    ]


def test_a_nul_in_the_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        plan_bytes(dataclasses.replace(JOB, args=("/app.wasm", "a\0b")), [])


def test_annotation_preopens_reach_the_job() -> None:
    job = job_of(context(preopens=(Preopen("/data", "/data", writable=False),)), "/c")
    assert job.preopens == (("/data", "/data", False),)
