"""The compiled-module cache: compile once, verify before loading, evict the least recently used."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from wasmvisor.engines.module_cache import CACHE_DIR_ENV, ModuleCache
from wasmvisor.engines.wasmtime_engine import WasmtimeEngine, engine_fingerprint

HELLO_WAT = '(module (func (export "_start")))'


class Recorder:
    """A stand-in engine: 'compiles' by prefixing, 'loads' by reading the file back."""

    def __init__(self) -> None:
        self.compiled: list[bytes] = []
        self.loaded: list[bytes] = []
        self.in_memory: list[bytes] = []

    def compile(self, wasm: bytes) -> bytes:
        self.compiled.append(wasm)
        return b"compiled:" + wasm

    def load(self, path: str) -> bytes:
        data = Path(path).read_bytes()
        self.loaded.append(data)
        return data

    def load_bytes(self, serialized: bytes) -> bytes:
        self.in_memory.append(serialized)
        return serialized


def cache_in(folder: Path, fingerprint: str = "engine-1", max_bytes: int = 1 << 20) -> ModuleCache[bytes]:
    return ModuleCache[bytes](folder, fingerprint, max_bytes)


def test_second_get_loads_from_the_cache_without_compiling(tmp_path: Path) -> None:
    cache, rec = cache_in(tmp_path), Recorder()
    assert cache.get(b"mod", rec.compile, rec.load, rec.load_bytes) == b"compiled:mod"
    assert cache.get(b"mod", rec.compile, rec.load, rec.load_bytes) == b"compiled:mod"
    assert rec.compiled == [b"mod"]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".cwasm", ".lock", ".meta"]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda cwasm, meta: cwasm.write_bytes(b"compiled:XXX"), id="corrupt"),
        pytest.param(lambda cwasm, meta: cwasm.write_bytes(cwasm.read_bytes()[:5]), id="truncated"),
        pytest.param(lambda cwasm, meta: meta.write_bytes(b"{not json"), id="bad-record"),
        pytest.param(lambda cwasm, meta: meta.unlink(), id="record-missing"),
    ],
)
def test_a_damaged_entry_is_never_loaded_but_deleted_and_recompiled(
    tmp_path: Path, damage: Callable[[Path, Path], object]
) -> None:
    cache, rec = cache_in(tmp_path), Recorder()
    cache.get(b"mod", rec.compile, rec.load, rec.load_bytes)
    cwasm, meta = cache.paths(cache.key(b"mod"))
    damage(cwasm, meta)
    rec.loaded.clear()
    assert cache.get(b"mod", rec.compile, rec.load, rec.load_bytes) == b"compiled:mod"
    assert rec.compiled == [b"mod", b"mod"]
    assert rec.loaded == [b"compiled:mod"]  # the damaged bytes never reached the loader
    cache.verify(cache.key(b"mod"))  # and the entry is whole again


def test_an_entry_of_another_engine_fingerprint_is_not_loaded(tmp_path: Path) -> None:
    old, rec = cache_in(tmp_path, "engine-1"), Recorder()
    old.get(b"mod", rec.compile, rec.load, rec.load_bytes)
    key = old.key(b"mod")
    new = cache_in(tmp_path, "engine-2")
    # Same file names, other fingerprint in the record (as if a wasmtime upgrade reused the key).
    for path in old.paths(key):
        path.rename(tmp_path / path.name.replace(key, new.key(b"mod")))
    rec.loaded.clear()
    new.get(b"mod", rec.compile, rec.load, rec.load_bytes)
    assert rec.compiled == [b"mod", b"mod"]
    assert rec.loaded == [b"compiled:mod"]


def test_a_loader_refusing_a_verified_entry_recompiles_instead_of_failing(tmp_path: Path) -> None:
    cache, rec = cache_in(tmp_path), Recorder()
    cache.get(b"mod", rec.compile, rec.load, rec.load_bytes)
    calls = []

    def picky_load(path: str) -> bytes:
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("incompatible")
        return Path(path).read_bytes()

    assert cache.get(b"mod", rec.compile, picky_load, rec.load_bytes) == b"compiled:mod"
    assert rec.compiled == [b"mod", b"mod"]


def test_least_recently_used_entries_are_evicted_past_the_size_bound(tmp_path: Path) -> None:
    cache, rec = cache_in(tmp_path, max_bytes=2 * len(b"compiled:modX")), Recorder()
    for i, name in enumerate((b"modA", b"modB")):
        cache.get(name, rec.compile, rec.load, rec.load_bytes)
        os.utime(cache.paths(cache.key(name))[0], ns=(i * 10**9, i * 10**9))
    cache.get(b"modA", rec.compile, rec.load, rec.load_bytes)  # a use makes A the most recent
    cache.get(b"modC", rec.compile, rec.load, rec.load_bytes)
    present = {p.stem for p in tmp_path.glob("*.cwasm")}
    assert present == {cache.key(b"modA"), cache.key(b"modC")}


def test_an_unwritable_cache_folder_still_compiles(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache, rec = cache_in(blocker / "cache"), Recorder()
    assert cache.get(b"mod", rec.compile, rec.load, rec.load_bytes) == b"compiled:mod"


def test_empty_cache_dir_env_turns_the_cache_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, "")
    assert ModuleCache.from_env("x") is None


def test_two_processes_starting_the_same_new_module_compile_it_once(tmp_path: Path) -> None:
    folder, log = tmp_path / "cache", tmp_path / "compiles"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from wasmvisor.engines.module_cache import ModuleCache
        def compile(wasm):
            with open({str(log)!r}, "a") as f:
                f.write("x")
            time.sleep(0.3)
            return b"compiled:" + wasm
        cache = ModuleCache(Path({str(folder)!r}), "engine-1")
        assert cache.get(b"mod", compile, lambda p: Path(p).read_bytes(), bytes) == b"compiled:mod"
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=30) for p in procs] == [0, 0]
    assert log.read_text() == "x"


def test_wasmtime_engine_stores_then_deserializes_a_module(private_module_cache: Path) -> None:
    engine = WasmtimeEngine()
    assert engine._cache is not None and engine._cache.root == private_module_cache
    wat = HELLO_WAT.encode()
    first = engine._cache.get(wat, engine._compile_serialized, engine._deserialize_file, engine._deserialize)
    second = engine._cache.get(wat, engine._compile_serialized, engine._deserialize_file, engine._deserialize)
    assert [e.name for e in first.exports] == [e.name for e in second.exports] == ["_start"]


def test_wasmtime_engine_never_deserializes_a_corrupt_entry(private_module_cache: Path) -> None:
    engine = WasmtimeEngine()
    assert engine._cache is not None
    wat = HELLO_WAT.encode()
    engine._cache.get(wat, engine._compile_serialized, engine._deserialize_file, engine._deserialize)
    cwasm, _ = engine._cache.paths(engine._cache.key(wat))
    cwasm.write_bytes(b"\x7fELF" + b"\xff" * 200)  # garbage that would crash a blind deserialize
    module = engine._cache.get(wat, engine._compile_serialized, engine._deserialize_file, engine._deserialize)
    assert isinstance(module, wasmtime.Module)


def test_fingerprint_names_the_wasmtime_version() -> None:
    assert "wasmtime-" in engine_fingerprint()
