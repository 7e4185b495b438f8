"""Capability names and numbers, and the sets a process keeps after an exec (pure)."""

from __future__ import annotations

import pytest

from wasmvisor.errors import InvalidArgument
from wasmvisor.worker.capabilities import (
    CAP_NUMBERS,
    cap_mask,
    cap_number,
    caps_after_exec,
    last_cap_number,
    parse_capabilities,
)


def test_cap_names_map_to_linux_numbers() -> None:
    assert cap_number("CAP_CHOWN") == 0
    assert cap_number("CAP_NET_BIND_SERVICE") == 10
    assert cap_number("CAP_SYS_ADMIN") == 21
    assert cap_number("CAP_CHECKPOINT_RESTORE") == 40
    assert cap_number("net_raw") == 13  # Docker-style short, lower-case names too
    assert cap_mask([0, 10]) == 0x401


def test_unknown_cap_name_is_invalid_argument_naming_it() -> None:
    with pytest.raises(InvalidArgument, match=r"process.capabilities.effective: unknown capability 'CAP_FLY'"):
        parse_capabilities({"effective": ["CAP_CHOWN", "CAP_FLY"]}, last_cap=40)


def test_caps_beyond_the_kernels_last_cap_are_skipped_like_runc() -> None:
    caps = parse_capabilities({"bounding": ["CAP_CHOWN", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]}, last_cap=38)
    assert caps.bounding == {0}
    assert caps.effective == caps.permitted == caps.inheritable == frozenset()
    assert caps.ambient == ()


def test_last_cap_number_matches_proc() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert last_cap_number() == int(f.read())


def test_caps_after_exec_follow_the_kernels_rules() -> None:
    caps = parse_capabilities({"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                               "permitted": ["CAP_KILL", "CAP_NET_RAW"], "inheritable": ["CAP_NET_RAW"],
                               "ambient": ["CAP_NET_RAW"]}, last_cap=40)
    held = frozenset(range(41))
    kill, chown, raw = CAP_NUMBERS["CAP_KILL"], CAP_NUMBERS["CAP_CHOWN"], CAP_NUMBERS["CAP_NET_RAW"]
    assert caps_after_exec(caps, 0, held) == ({kill, chown, raw}, {kill, chown, raw}, {raw})
    assert caps_after_exec(caps, 1000, held) == ({raw}, {raw}, {raw})
    assert caps_after_exec(caps, 0, frozenset({kill})) == ({kill}, {kill}, {raw})
