"""The worker's half of the runner (worker/runner_exec.py): the loader and the library folders it names."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from wasmvisor.worker.namespaces import RELAY_BINARY
from wasmvisor.worker.runner_exec import RUNNER_BINARY, check_reachable, elf_interpreter, library_dirs


def test_library_dirs_are_the_folders_of_mapped_libraries_relative_to_root() -> None:
    maps = [
        "7f00-7f01 r--p 00000000 fd:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6",
        "7f01-7f02 r-xp 00001000 fd:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6",
        "7f02-7f03 rw-p 00000000 00:00 0 ",
        "7f03-7f04 r--p 00000000 fd:01 9 /venv/site-packages/wasmtime/linux-x86_64/_libwasmtime.so",
        "7f04-7f05 r--p 00000000 fd:01 9 /usr/lib/locale/locale-archive",
        "7ffc-7ffd rw-p 00000000 00:00 0                          [stack]",
        "7f05-7f06 r--p 00000000 fd:01 9 /lib64/ld-linux-x86-64.so.2",
    ]
    assert library_dirs(maps) == ["usr/lib/x86_64-linux-gnu", "venv/site-packages/wasmtime/linux-x86_64", "lib64"]


def test_the_loader_is_the_runner_s_pt_interp_as_for_python_itself() -> None:
    assert elf_interpreter(str(RUNNER_BINARY)) == elf_interpreter(sys.executable)
    assert elf_interpreter(str(RUNNER_BINARY)).startswith("/")


def test_a_static_binary_has_no_loader_to_name() -> None:
    with pytest.raises(ValueError, match="no PT_INTERP"):
        elf_interpreter(str(RELAY_BINARY))


def test_a_runner_only_root_can_reach_is_refused() -> None:
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path lies in a folder only root can search
    try:
        os.chmod(base, 0o755)
        runner = base / "private" / "runner"
        runner.parent.mkdir(mode=0o755)
        runner.write_bytes(b"")
        runner.chmod(0o755)
        check_reachable(str(runner), 0o005)
        runner.parent.chmod(0o700)
        with pytest.raises(ValueError, match="private is not searchable by every user"):
            check_reachable(str(runner), 0o005)
        runner.parent.chmod(0o755)
        runner.chmod(0o700)
        with pytest.raises(ValueError, match="runner is not readable by every user"):
            check_reachable(str(runner), 0o005)
    finally:
        shutil.rmtree(base)
