"""The engine catalog the supervisor reads agrees with the engines themselves, without importing them."""

from __future__ import annotations

import subprocess
import sys

from wasmvisor.engines import catalog


def test_wasmtime_entry_matches_the_engine_class() -> None:
    from wasmvisor.engines.wasmtime_engine import WasmtimeEngine, engine_fingerprint

    info = catalog.info_for("wasmvisor.engines.wasmtime_engine:WasmtimeEngine")
    assert info.name == WasmtimeEngine.name
    assert info.layer_types == WasmtimeEngine.supported_layer_types
    assert info.fingerprint is not None and info.fingerprint() == engine_fingerprint()


def test_the_fingerprint_is_found_without_importing_wasmtime() -> None:
    code = ("import sys; from wasmvisor.engines import catalog; fp = catalog.wasmtime_fingerprint(); "
            "assert 'wasmtime' not in sys.modules, 'imported'; assert 'unknown' not in fp, fp; print(fp)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("wasmtime-py wasmtime-")


def test_an_unknown_engine_runs_the_default_layer_types_and_never_precompiles() -> None:
    info = catalog.info_for("example.engines:Other")
    assert info.name == "Other"
    assert info.layer_types == (catalog.MODULE_LAYER, catalog.COMPONENT_LAYER)
    assert info.fingerprint is None
