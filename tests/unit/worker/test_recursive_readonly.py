"""An `rbind` + `ro` volume is read-only all the way down: the mounts under its source too
(mount_setattr with AT_RECURSIVE, or one remount per submount where the kernel lacks it). Each
case runs in a throwaway Python process with a private mount namespace (needs root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.host import mounts_under
from wasmvisor.linux.mountinfo import parse_mount_points
from wasmvisor.worker.rootfs import submounts

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")

SCRIPT = r"""
import errno, json, os, sys
from wasmvisor.linux import syscalls
from wasmvisor.linux.mount_options import MS_PRIVATE, MS_REC
from wasmvisor.worker.spec_linux import container_layout
from wasmvisor.worker.rootfs import build_rootfs, enter_root

root, volume, options, mode = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
syscalls.unshare(0x00020000)  # CLONE_NEWNS
syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)
syscalls.mount("tmpfs", os.path.join(volume, "sub"), "tmpfs", 0)  # a submount of the volume's source
if mode == "no-mount-setattr":
    def enosys(*args, **kwargs):
        raise OSError(errno.ENOSYS, "mount_setattr: not implemented")
    syscalls.mount_setattr = enosys
build_rootfs(root, container_layout({"mounts": [
    {"destination": "/data", "type": "bind", "source": volume, "options": options}]}))
enter_root(root)
seen = {}
for path in ("/data/top.txt", "/data/sub/below.txt"):
    try:
        open(path, "w").close()
        seen[path] = "ok"
    except OSError as exc:
        seen[path] = exc.strerror
print(json.dumps(seen))
"""


def writes(tmp_path: Path, options: str, mode: str = "") -> dict[str, str]:
    root, volume = tmp_path / "root", tmp_path / "volume"
    root.mkdir()
    (volume / "sub").mkdir(parents=True)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(root), str(volume), options, mode],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert mounts_under(tmp_path) == [], "nothing stays mounted on the host"
    result: dict[str, str] = json.loads(out.stdout)
    return result


@needs_root
@pytest.mark.parametrize("options", ["rbind,ro", "rbind,rro"])
def test_rbind_ro_makes_the_submounts_read_only_too(tmp_path: Path, options: str) -> None:
    assert writes(tmp_path, options) == {"/data/top.txt": "Read-only file system",
                                             "/data/sub/below.txt": "Read-only file system"}


@needs_root
def test_without_mount_setattr_each_submount_is_remounted_read_only(tmp_path: Path) -> None:
    assert writes(tmp_path, "rbind,ro", mode="no-mount-setattr") == {
        "/data/top.txt": "Read-only file system", "/data/sub/below.txt": "Read-only file system"}


@needs_root
def test_rbind_rw_leaves_the_submounts_writable(tmp_path: Path) -> None:
    assert writes(tmp_path, "rbind") == {"/data/top.txt": "ok", "/data/sub/below.txt": "ok"}


MOUNTINFO = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /srv/root/data rw shared:2 - tmpfs tmpfs rw
41 40 0:36 / /srv/root/data/a\040b rw - tmpfs tmpfs rw
42 41 0:37 / /srv/root/data/a\040b/deep rw - tmpfs tmpfs rw
43 22 0:38 / /srv/root/database rw - tmpfs tmpfs rw
"""


def test_submounts_are_those_strictly_under_the_path_with_escapes_decoded_parents_first() -> None:
    points = parse_mount_points(MOUNTINFO)
    assert submounts(points, "/srv/root/data") == ["/srv/root/data/a b", "/srv/root/data/a b/deep"]
    assert submounts(points, "/srv/root/data/") == ["/srv/root/data/a b", "/srv/root/data/a b/deep"]
