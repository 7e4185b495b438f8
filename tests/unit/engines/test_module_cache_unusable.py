"""A module cache that cannot be used never fails a module: it compiles in memory, writes nothing
into the folder and warns once per process. (Read-only and full filesystems need mounts: they
are in tests/integration/test_module_cache_unusable.py, through a real supervisor.)"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from tests.unit.engines.test_module_cache import Recorder, cache_in
from wasmvisor.engines import module_cache


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test is a process of its own as far as the once-per-process warning goes."""
    monkeypatch.setattr(module_cache, "_WARNED", set())


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == module_cache.__name__ and r.levelno >= logging.WARNING]


def compile_twice(folder: Path, caplog: pytest.LogCaptureFixture) -> Recorder:
    """Two modules through a cache in `folder`, as two Creates of one process would."""
    cache, rec = cache_in(folder), Recorder()
    with caplog.at_level(logging.DEBUG, logger=module_cache.__name__):
        assert cache.get(b"modA", rec.compile, rec.load, rec.load_bytes) == b"compiled:modA"
        assert cache.get(b"modB", rec.compile, rec.load, rec.load_bytes) == b"compiled:modB"
    return rec


def test_a_regular_file_as_cache_folder_compiles_in_memory_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "cache"
    folder.write_text("not a folder")
    rec = compile_twice(folder, caplog)
    assert rec.in_memory == [b"compiled:modA", b"compiled:modB"]
    (warning,) = cache_warnings(caplog)
    assert f"module cache {folder}: cannot lock an entry" in warning and "compiling modules in memory" in warning
    assert folder.read_text() == "not a folder"


def test_a_missing_folder_that_cannot_be_made_compiles_in_memory_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rec = compile_twice(blocker / "cache", caplog)
    assert rec.in_memory == [b"compiled:modA", b"compiled:modB"]
    assert len(cache_warnings(caplog)) == 1
    assert "Traceback" not in caplog.text


def test_a_filesystem_without_flock_compiles_in_memory_and_leaves_no_lock_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(module_cache.fcntl, "flock", no_flock)
    folder = tmp_path / "cache"
    rec = compile_twice(folder, caplog)
    assert rec.in_memory == [b"compiled:modA", b"compiled:modB"]
    (warning,) = cache_warnings(caplog)
    assert "No locks available" in warning
    assert list(folder.iterdir()) == []


def test_a_full_folder_compiles_in_memory_and_leaves_no_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: object, data: bytes, mode: int = 0o644) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(module_cache, "write_atomic", full)
    folder = tmp_path / "cache"
    rec = compile_twice(folder, caplog)
    assert rec.in_memory == [b"compiled:modA", b"compiled:modB"]
    assert len(cache_warnings(caplog)) == 1
    assert sorted(p.suffix for p in folder.iterdir()) == [".lock", ".lock"]  # nothing but the locks


def test_put_into_an_unusable_folder_says_it_did_not_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "cache"
    folder.write_text("not a folder")
    cache = cache_in(folder)
    assert cache.put(b"modA", b"compiled") is False
    assert cache.put(b"modB", b"compiled") is False
    assert len(cache_warnings(caplog)) == 1
