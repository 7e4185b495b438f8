"""The pty helpers: a new pty's slave path, and its window size set and read back through the master."""

from __future__ import annotations

import os
import select

import pytest

from wasmvisor.errors import InvalidArgument
from wasmvisor.linux.pty import open_pty, set_window_size, window_size


def test_a_new_pty_has_a_slave_path_and_takes_a_window_size() -> None:
    master, slave, path = open_pty()
    try:
        assert path.startswith("/dev/pts/")
        assert os.isatty(slave) and not os.get_blocking(master)
        set_window_size(master, 101, 33)
        assert window_size(slave) == (101, 33)
    finally:
        os.close(master)
        os.close(slave)


def test_a_window_size_out_of_range_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="window size 70000x24: out of range"):
        set_window_size(-1, 70000, 24)


def test_a_pty_from_a_given_devpts_is_named_in_it() -> None:
    master, slave, path = open_pty("/dev/pts")  # a container's would be /proc/PID/root/dev/pts
    try:
        assert path.startswith("/dev/pts/") and path[len("/dev/pts/"):].isdigit()
        assert os.path.samestat(os.fstat(slave), os.stat(path))
        os.write(slave, b"x")
        assert select.select([master], [], [], 10)[0] and os.read(master, 1) == b"x"
    finally:
        os.close(master)
        os.close(slave)
