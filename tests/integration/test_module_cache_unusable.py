"""A module cache folder that is read-only, full, missing and uncreatable, or a file never fails a
task: the worker compiles in memory, logs one warning (per worker process: each container that
compiles), never a traceback, and writes nothing into the folder."""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import EXIT_WITH, HELLO, Harness, wat
from tests.integration.test_task_api import POD, create
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Write into `folder` until its filesystem is full."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@contextlib.contextmanager
def read_only(base: Path) -> Iterator[Path]:
    with tmpfs(base / "ro", "ro,size=1m") as mnt:
        yield mnt / "cache"  # missing, and cannot be made there either


@contextlib.contextmanager
def read_only_existing(base: Path) -> Iterator[Path]:
    (base / "ro-src" / "cache").mkdir(parents=True)
    (base / "ro").mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(base / "ro-src"), str(base / "ro")], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(base / "ro")], check=True)
    try:
        yield base / "ro" / "cache"
    finally:
        subprocess.run(["umount", "-l", str(base / "ro")], check=False)


@contextlib.contextmanager
def full(base: Path) -> Iterator[Path]:
    with tmpfs(base / "full", "size=1m") as mnt:
        fill(mnt)
        yield mnt


@contextlib.contextmanager
def a_file(base: Path) -> Iterator[Path]:
    (base / "cache-file").write_text("not a folder")
    yield base / "cache-file"


@contextlib.contextmanager
def under_a_file(base: Path) -> Iterator[Path]:
    (base / "blocker").write_text("not a folder")
    yield base / "blocker" / "cache"


def snapshot(folder: Path) -> dict[str, int]:
    if not folder.is_dir():
        return {folder.name: folder.stat().st_size} if folder.exists() else {}
    return {p.name: p.stat().st_size for p in folder.iterdir()}


@pytest.mark.parametrize("make", [read_only, read_only_existing, full, a_file, under_a_file],
                         ids=["read-only-missing", "read-only", "full", "a-file", "under-a-file"])
def test_an_unusable_module_cache_never_fails_a_task(
    harness: Harness, make: Callable[[Path], contextlib.AbstractContextManager[Path]]
) -> None:
    h = harness
    with make(h.base) as cache:
        before, existed = snapshot(cache), cache.exists()
        first = h.bundle("first", {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=POD)
        log = first / "log"
        log.touch()  # a file where containerd has its FIFO: the supervisor's (and workers') log
        c = h.client(h.start_shim(first, "first", env_extra={"WASMVISOR_CACHE_DIR": str(cache)}))
        modules = {"first": (first, 0)}
        second = h.bundle("second", {"exit.wasm": wat(EXIT_WITH.format(code=3))}, ["/exit.wasm"], annotations=POD)
        modules["second"] = (second, 3)
        for task_id, (bundle, code) in modules.items():
            create(h, c, task_id, bundle)
            h.call(c, "Start", pb.StartRequest(id=task_id), pb.StartResponse)
            assert h.call(c, "Wait", pb.WaitRequest(id=task_id), pb.WaitResponse).exit_status == code
            h.call(c, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)
        assert (first / "stdout").read_bytes() == b"hello\n"

        text = log.read_text()
        for task_id in modules:
            warnings = [line for line in text.splitlines()
                        if "level=warning" in line and f"instance={task_id}" in line and "module cache" in line]
            assert len(warnings) == 1, text
            assert "compiling modules in memory" in warnings[0]
        assert "Traceback" not in text and "File \"" not in text, text
        after = {name: size for name, size in snapshot(cache).items() if not name.endswith(".lock")}
        assert after == before
        assert cache.exists() == existed
