"""Seeding the module cache with compiled bytes made elsewhere (the content store's copy)."""

from __future__ import annotations

from pathlib import Path

from wasmvisor.engines.module_cache import ModuleCache


def test_put_makes_an_entry_that_get_loads_without_compiling(tmp_path: Path) -> None:
    cache = ModuleCache[bytes](tmp_path, "engine-1")
    cache.put(b"wasm", b"serialized")
    assert cache.compiled(b"wasm") == b"serialized"

    def never(wasm: bytes) -> bytes:
        raise AssertionError("compiled")

    assert cache.get(b"wasm", never, lambda path: Path(path).read_bytes(), bytes) == b"serialized"


def test_compiled_is_none_for_a_missing_or_foreign_entry(tmp_path: Path) -> None:
    assert ModuleCache[bytes](tmp_path, "engine-1").compiled(b"wasm") is None
    ModuleCache[bytes](tmp_path, "engine-1").put(b"wasm", b"serialized")
    assert ModuleCache[bytes](tmp_path, "engine-2").compiled(b"wasm") is None
