"""The one atomic write: readers see the old file or the whole new one, with exactly the mode asked for,
and nothing of the write is left behind when it fails."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from wasmvisor.linux.files import write_atomic


def test_the_file_is_replaced_by_a_new_one_and_no_temporary_stays(tmp_path: Path) -> None:
    target = tmp_path / "address"
    target.write_text("old")
    old_inode = target.stat().st_ino
    write_atomic(str(target), b"unix:///new")
    assert target.read_bytes() == b"unix:///new"
    assert target.stat().st_ino != old_inode  # renamed over, never rewritten in place
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["address"]


def test_the_mode_is_exactly_the_one_asked_for_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "script", b"#!/bin/sh\n", 0o755)
        write_atomic(tmp_path / "pid", b"42", 0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "script").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "pid").stat().st_mode) == 0o600


def test_a_failed_rename_leaves_the_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        write_atomic(target, b"data")
    assert target.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_temporary_names_left_by_others_are_passed_over(tmp_path: Path) -> None:
    for attempt in range(3):
        (tmp_path / f".state.{os.getpid()}.{attempt}.tmp").write_text("someone else's")
    write_atomic(tmp_path / "state", b"mine")
    assert (tmp_path / "state").read_bytes() == b"mine"
    assert len(list(tmp_path.iterdir())) == 4
