"""The /proc parsers behind `wasmvisor ps` and `doctor`, on text as the kernel writes it."""

from __future__ import annotations

import os

from wasmvisor.linux import procfs

STAT = ("4242 (wasmvisor-worker ns/a) b) S 4200 4242 4242 0 -1 4194560 1 0 0 0 "
        "250 50 0 0 20 0 1 0 123456 10000000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")


def test_stat_reads_parent_state_cpu_and_start_past_a_command_with_parentheses() -> None:
    info = procfs.parse_stat(STAT)

    assert (info.ppid, info.state, info.started_ticks) == (4200, "S", 123456)
    assert info.cpu_seconds == 300 / procfs.CLOCK_TICKS


def test_pss_is_read_in_bytes_from_smaps_rollup() -> None:
    text = "00400000-7ffd [rollup]\nRss:               20480 kB\nPss:               13700 kB\nPss_Anon: 1 kB\n"

    assert procfs.parse_pss(text) == 13700 * 1024
    assert procfs.parse_pss("Rss: 1 kB\n") is None


def test_unix_sockets_keeps_listening_sockets_bound_to_a_path() -> None:
    text = (
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 5001 /run/containerd/s/abc\n"
        "0000000000000000: 00000003 00000000 00000000 0001 03 5002 /run/containerd/s/abc\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 5003 @abstract\n"
        "0000000000000000: 00000002 00000000 00000000 0002 01 5004\n"
    )

    assert procfs.parse_unix_sockets(text) == {5001: "/run/containerd/s/abc"}


def test_boot_time_comes_from_btime() -> None:
    assert procfs.parse_boot_time("cpu 1 2 3\nbtime 1764990000\nprocesses 5\n") == 1764990000


def test_the_readers_see_this_process() -> None:
    me = os.getpid()
    info = procfs.stat(me)

    assert info is not None and info.ppid == os.getppid()
    assert (procfs.pss(me) or 0) > 0 and "python" in (procfs.title(me) or "")
    assert procfs.environ(me) is not None and procfs.stat(2**22 + 1) is None
