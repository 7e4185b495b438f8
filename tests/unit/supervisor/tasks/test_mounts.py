"""Rootfs mounts: containerd's Mount entries become real mounts, and a rootfs unmounts completely."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmvisor.errors import InvalidArgument
from wasmvisor.linux import mountinfo
from wasmvisor.linux.mount_options import (
    MS_BIND,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)
from wasmvisor.supervisor.tasks import mounts
from wasmvisor.supervisor.tasks.mounts import MountSpec, is_mounted, mount_all, parse_options, unmount_all

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


@pytest.mark.parametrize(("options", "flags", "data", "propagation"), [
    ([], 0, "", []),
    (["ro"], MS_RDONLY, "", []),
    (["ro", "rw"], 0, "", []),
    (["rw", "ro"], MS_RDONLY, "", []),
    (["nosuid", "nodev", "noexec"], MS_NOSUID | MS_NODEV | MS_NOEXEC, "", []),
    (["nosuid", "suid", "nodev", "dev", "noexec", "exec"], 0, "", []),
    (["sync", "async"], 0, "", []),
    (["sync"], MS_SYNCHRONOUS, "", []),
    (["remount", "ro"], MS_REMOUNT | MS_RDONLY, "", []),
    (["bind"], MS_BIND, "", []),
    (["rbind", "ro"], MS_BIND | MS_REC | MS_RDONLY, "", []),
    (["noatime", "nodiratime"], MS_NOATIME | MS_NODIRATIME, "", []),
    (["relatime"], MS_RELATIME, "", []),
    (["strictatime"], MS_STRICTATIME, "", []),
    (["mand"], MS_MANDLOCK, "", []),
    (["defaults"], 0, "", []),
    (["index=off", "lowerdir=/a:/b", "upperdir=/u", "workdir=/w"], 0,
     "index=off,lowerdir=/a:/b,upperdir=/u,workdir=/w", []),
    (["rbind", "rprivate"], MS_BIND | MS_REC, "", [MS_PRIVATE | MS_REC]),
    (["private", "shared", "rshared", "slave", "rslave", "unbindable"], 0, "",
     [MS_PRIVATE, MS_SHARED, MS_SHARED | MS_REC, MS_SLAVE,
      MS_SLAVE | MS_REC, MS_UNBINDABLE]),
    (["size=64m", "mode=755", "nosuid"], MS_NOSUID, "size=64m,mode=755", []),
])
def test_fstab_options_become_flags_data_and_propagation(
    options: list[str], flags: int, data: str, propagation: list[int],
) -> None:
    assert parse_options(options) == (flags, data, propagation)


def test_long_lowerdir_list_is_made_relative_to_the_snapshots_dir() -> None:
    base = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"
    lowers = ":".join(f"{base}/{n}/fs" for n in range(100, 40, -1))
    data = f"index=off,lowerdir={lowers},upperdir={base}/7/fs"
    common, compact = mounts._compact_lowerdirs(data)  # type: ignore[misc]
    assert common == base
    assert compact.startswith("index=off,lowerdir=100/fs:99/fs:") and compact.endswith(f"upperdir={base}/7/fs")


def test_lowerdirs_with_no_common_parent_are_not_compacted() -> None:
    assert mounts._compact_lowerdirs("lowerdir=/a/x:/b/y") is None


@pytest.fixture
def cleanup(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    unmount_all(str(tmp_path))


def _points_under(path: Path) -> list[str]:
    return mountinfo.points_under(str(path), mountinfo.mount_points())


@needs_root
def test_bind_mount_shows_the_source_and_unmounts(cleanup: Path) -> None:
    src, rootfs = cleanup / "src", cleanup / "rootfs"
    src.mkdir()
    rootfs.mkdir()
    (src / "hello.txt").write_text("hi")
    mount_all([MountSpec(type="bind", source=str(src), options=("rbind", "rw"))], str(rootfs))
    assert is_mounted(str(rootfs))
    assert (rootfs / "hello.txt").read_text() == "hi"
    unmount_all(str(rootfs))
    assert not is_mounted(str(rootfs))
    assert not (rootfs / "hello.txt").exists()


@needs_root
def test_read_only_bind_mount_refuses_writes(cleanup: Path) -> None:
    src, rootfs = cleanup / "src", cleanup / "rootfs"
    src.mkdir()
    rootfs.mkdir()
    mount_all([MountSpec(type="bind", source=str(src), options=("rbind", "ro"))], str(rootfs))
    with pytest.raises(OSError) as info:
        (rootfs / "new").write_text("x")
    assert info.value.errno == errno.EROFS
    (src / "still-writable").write_text("x")


@needs_root
def test_overlay_rootfs_with_a_nested_mount_unmounts_recursively(cleanup: Path) -> None:
    lower, upper, work, rootfs, extra = (cleanup / n for n in ("lower", "upper", "work", "rootfs", "extra"))
    for d in (lower, upper, work, rootfs, extra):
        d.mkdir()
    (lower / "app.wasm").write_bytes(b"\0asm")
    (lower / "data").mkdir()
    (extra / "inner.txt").write_text("inner")
    mount_all([
        MountSpec(type="overlay", source="overlay",
                  options=(f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}")),
        MountSpec(type="bind", source=str(extra), target="/data", options=("bind", "ro")),
    ], str(rootfs))
    assert (rootfs / "app.wasm").read_bytes() == b"\0asm"
    assert (rootfs / "data" / "inner.txt").read_text() == "inner"
    (rootfs / "written").write_text("x")
    assert (upper / "written").exists()
    assert len(_points_under(rootfs)) == 2
    unmount_all(str(rootfs))
    assert _points_under(rootfs) == []


@needs_root
def test_overlay_with_more_lowerdirs_than_fit_in_a_page(cleanup: Path) -> None:
    snapshots = cleanup / ("snapshots-" + "x" * 100)
    lowers = []
    for n in range(60):
        layer = snapshots / str(n) / "fs"
        layer.mkdir(parents=True)
        (layer / f"layer{n}").write_text(str(n))
        lowers.append(str(layer))
    upper, work, rootfs = cleanup / "upper", cleanup / "work", cleanup / "rootfs"
    for d in (upper, work, rootfs):
        d.mkdir()
    options = (f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}")
    assert len(",".join(options)) > 4096
    cwd = os.getcwd()
    mount_all([MountSpec(type="overlay", source="overlay", options=options)], str(rootfs))
    assert os.getcwd() == cwd
    assert (rootfs / "layer0").read_text() == "0" and (rootfs / "layer59").read_text() == "59"


@needs_root
def test_failed_mount_names_the_mount_and_leaves_nothing_mounted(cleanup: Path) -> None:
    src, rootfs = cleanup / "src", cleanup / "rootfs"
    src.mkdir()
    rootfs.mkdir()
    with pytest.raises(InvalidArgument) as info:
        mount_all([
            MountSpec(type="bind", source=str(src), options=("rbind",)),
            MountSpec(type="overlay", source="overlay",
                      options=(f"lowerdir={cleanup}/missing", f"upperdir={cleanup}/u", f"workdir={cleanup}/w")),
        ], str(rootfs))
    assert str(info.value).startswith(f"rootfs mount 2 (overlay on {rootfs}): ")
    assert _points_under(rootfs) == []


@needs_root
def test_missing_bind_source_is_reported(cleanup: Path) -> None:
    rootfs = cleanup / "rootfs"
    rootfs.mkdir()
    with pytest.raises(InvalidArgument, match=rf"rootfs mount 1 \(bind on {rootfs}\): No such file or directory"):
        mount_all([MountSpec(type="bind", source=str(cleanup / "nope"), options=("rbind",))], str(rootfs))


def test_mount_target_may_not_leave_the_rootfs(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="leaves the rootfs"):
        mount_all([MountSpec(type="bind", source="/", target="../../etc", options=("bind",))], str(tmp_path))


@needs_root
def test_stacked_mounts_and_paths_with_spaces_all_unmount(cleanup: Path) -> None:
    src, rootfs = cleanup / "src", cleanup / "my rootfs"
    src.mkdir()
    rootfs.mkdir()
    spec = MountSpec(type="bind", source=str(src), options=("bind",))
    mount_all([spec, spec], str(rootfs))
    assert is_mounted(str(rootfs))
    assert _points_under(rootfs) == [str(rootfs), str(rootfs)]
    unmount_all(str(rootfs))
    assert not is_mounted(str(rootfs))


def test_unmounting_what_is_not_mounted_is_fine(tmp_path: Path) -> None:
    unmount_all(str(tmp_path))
    unmount_all(str(tmp_path / "does" / "not" / "exist"))
    assert not is_mounted(str(tmp_path))

