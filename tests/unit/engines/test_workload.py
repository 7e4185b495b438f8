"""A container's annotations choosing its guest's preopens, limits and wasmtime settings."""

from __future__ import annotations

import pytest

from wasmvisor.engines.workload import Preopen, WorkloadOptions, configure, parse_workload
from wasmvisor.errors import InvalidArgument


def test_no_annotation_means_the_root_read_write_and_no_limit() -> None:
    options = parse_workload({"io.kubernetes.cri.container-type": "container"})
    assert options == WorkloadOptions()
    assert options.guest_preopens() == (Preopen("/", "/", writable=True),)
    assert options.engine_key() == ""


def test_preopens_list_exactly_what_the_guest_gets() -> None:
    options = parse_workload({"wasmvisor.io/preopens": "/data:/in:ro, /srv/out/:/out:rw,/cache,/etc/app:ro"})
    assert options.guest_preopens() == (
        Preopen("/data", "/in", writable=False), Preopen("/srv/out", "/out", writable=True),
        Preopen("/cache", "/cache", writable=True), Preopen("/etc/app", "/etc/app", writable=False))


def test_a_read_only_root() -> None:
    options = parse_workload({"wasmvisor.io/readonly-root": "true"})
    assert options.guest_preopens() == (Preopen("/", "/", writable=False),)


def test_limits_and_settings_join_the_engine_key_in_a_stable_order() -> None:
    options = parse_workload({"wasmvisor.io/time-limit": "1.5s", "wasmvisor.io/fuel": "1000000",
                              "wasmvisor.io/wasmtime.opt-level": "none", "wasmvisor.io/wasmtime.gc": "true"})
    assert (options.time_limit_s, options.fuel) == (1.5, 1000000)
    assert options.engine_key() == "cranelift_opt_level=none,wasm_gc=True,consume_fuel,epoch_interruption"


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0)])
def test_time_limits_take_units(text: str, seconds: float) -> None:
    assert parse_workload({"wasmvisor.io/time-limit": text}).time_limit_s == seconds


def test_turning_simd_off_turns_relaxed_simd_off_and_asking_for_both_is_refused() -> None:
    options = parse_workload({"wasmvisor.io/wasmtime.simd": "false"})
    assert options.wasmtime == (("wasm_relaxed_simd", False), ("wasm_simd", False))
    with pytest.raises(InvalidArgument) as err:
        parse_workload({"wasmvisor.io/wasmtime.simd": "false", "wasmvisor.io/wasmtime.relaxed-simd": "true"})
    assert err.value.message == ("annotation wasmvisor.io/wasmtime.relaxed-simd: true needs "
                                 "wasmvisor.io/wasmtime.simd true as well")


def test_configure_sets_the_config_and_what_gc_needs() -> None:
    class Config:
        pass

    config = Config()
    configure(config, parse_workload({"wasmvisor.io/wasmtime.gc": "true", "wasmvisor.io/fuel": "5",
                                      "wasmvisor.io/time-limit": "1s"}))
    assert vars(config) == {"wasm_gc": True, "wasm_function_references": True, "wasm_reference_types": True,
                            "consume_fuel": True, "epoch_interruption": True}


@pytest.mark.parametrize(("annotations", "message"), [
    ({"wasmvisor.io/preopens": "data:/data"}, "annotation wasmvisor.io/preopens entry 1 'data:/data': container path "
                                             "'data' must be absolute"),
    ({"wasmvisor.io/preopens": "/a:/x,/b:/x"}, "annotation wasmvisor.io/preopens entry 2 '/b:/x': guest path /x is "
                                              "given twice"),
    ({"wasmvisor.io/preopens": "/a:/b:/c"}, "want CONTAINER_PATH[:GUEST_PATH][:ro|rw]"),
    ({"wasmvisor.io/preopens": "/a/../etc"}, "without '..'"),
    ({"wasmvisor.io/readonly-root": "yes"}, "annotation wasmvisor.io/readonly-root: 'yes' is not true or false"),
    ({"wasmvisor.io/time-limit": "10"}, "annotation wasmvisor.io/time-limit: '10' is not a duration"),
    ({"wasmvisor.io/time-limit": "0s"}, "annotation wasmvisor.io/time-limit: '0s' is not a duration"),
    ({"wasmvisor.io/fuel": "-3"}, "annotation wasmvisor.io/fuel: '-3' is not a positive integer"),
    ({"wasmvisor.io/wasmtime.gc": "on"}, "annotation wasmvisor.io/wasmtime.gc: 'on' is not true or false"),
    ({"wasmvisor.io/wasmtime.opt-level": "max"}, "annotation wasmvisor.io/wasmtime.opt-level: 'max' is not one of"),
    ({"wasmvisor.io/wasmtime.jit": "true"}, "annotation wasmvisor.io/wasmtime.jit: unknown wasmtime setting 'jit'"),
])
def test_bad_values_name_the_annotation(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_workload(annotations)
    assert message in err.value.message
