"""The one /proc/self/mountinfo reader: mount points in order, escapes decoded, what lies under a path."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmvisor.linux import mountinfo

TABLE = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /srv/root/data rw - tmpfs tmpfs rw
41 40 0:36 / /srv/root/data/a\040b rw - tmpfs tmpfs rw
42 41 0:37 / /srv/root/data/a\040b rw - tmpfs tmpfs rw
43 22 0:38 / /srv/tab\011new\012line\134back rw - tmpfs tmpfs rw

44 22 0:39 / /srv/root/database rw - tmpfs tmpfs rw
"""


@pytest.mark.parametrize(("field", "path"), [
    ("/plain", "/plain"),
    ("/a\\040b", "/a b"),
    ("/a\\011b\\012c\\134d", "/a\tb\nc\\d"),
    ("/end\\040", "/end "),
    ("/not\\08octal", "/not\\08octal"),  # only three octal digits make an escape
    ("/short\\04", "/short\\04"),
    ("/caf\\303\\251", "/café"),  # octal bytes of UTF-8 decode as the file system's names do
])
def test_octal_escapes_are_decoded(field: str, path: str) -> None:
    assert mountinfo.unescape(field) == path


def test_mount_points_come_in_mount_order_with_stacked_mounts_repeated() -> None:
    assert mountinfo.parse_mount_points(TABLE) == [
        "/", "/srv/root/data", "/srv/root/data/a b", "/srv/root/data/a b", "/srv/tab\tnew\nline\\back",
        "/srv/root/database"]


def test_points_under_a_path_include_it_and_not_its_siblings_with_the_same_prefix() -> None:
    points = mountinfo.parse_mount_points(TABLE)
    expected = ["/srv/root/data", "/srv/root/data/a b", "/srv/root/data/a b"]
    assert mountinfo.points_under("/srv/root/data", points) == expected
    assert mountinfo.points_under("/srv/root/data/", points) == expected
    assert mountinfo.points_under("/", points) == points


def test_the_table_is_read_from_a_file(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(TABLE)
    assert mountinfo.mount_points(str(table)) == mountinfo.parse_mount_points(TABLE)
    with pytest.raises(FileNotFoundError):
        mountinfo.mount_points(str(tmp_path / "absent"))


def test_this_namespace_has_a_root_mount() -> None:
    assert "/" in mountinfo.mount_points()
