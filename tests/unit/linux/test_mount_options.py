"""The one table of mount options: flags set and cleared in order, propagation changes apart, the
rest as the filesystem's data (pure)."""

from __future__ import annotations

import pytest

from wasmvisor.linux.mount_options import (
    FLAG_OPTIONS,
    MS_BIND,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
    parse,
)


@pytest.mark.parametrize(("options", "expected"), [
    ([], (0, (), "")),
    (["ro", "rw"], (0, (), "")),
    (["rw", "ro"], (MS_RDONLY, (), "")),
    (["rbind", "ro", "nosuid"], (MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID, (), "")),
    (["nosymfollow"], (MS_NOSYMFOLLOW, (), "")),
    (["rprivate", "slave"], (0, (MS_PRIVATE | MS_REC, MS_SLAVE), "")),
    (["mode=755", "", "size=65536k", "nosuid"], (MS_NOSUID, (), "mode=755,size=65536k")),
    (["remount"], (0, (), "remount")),
])
def test_options_become_flags_propagation_and_data(options: list[str], expected: tuple[int, tuple[int, ...], str],
                                                   ) -> None:
    assert parse(options) == expected


def test_a_caller_may_add_options_of_its_own() -> None:
    table = {**FLAG_OPTIONS, "remount": (MS_REMOUNT, 0)}
    assert parse(["remount", "ro"], table) == (MS_REMOUNT | MS_RDONLY, (), "")
