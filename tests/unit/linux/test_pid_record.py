"""A task's process recorded by pid and start time (init.pid), as `delete` reads it back."""

from __future__ import annotations

import os

from wasmvisor.linux import pid_record


def test_a_record_names_a_running_process_by_pid_and_start_time() -> None:
    pid, start = pid_record.decode(pid_record.encode(os.getpid())) or (0, None)
    assert pid == os.getpid() and start is not None
    assert pid_record.is_running(pid, start)
    assert not pid_record.is_running(pid, start + 1)  # another process that got the same pid


def test_records_decode_or_name_nothing() -> None:
    assert pid_record.decode(b"42 1234") == (42, 1234)
    assert pid_record.decode(b"42\n") == (42, None)  # an older wasmvisor's file: the pid alone
    for bad in (b"", b"0", b"x", b"-1 5", b"1 2 3", b"42 x"):
        assert pid_record.decode(bad) is None, bad
