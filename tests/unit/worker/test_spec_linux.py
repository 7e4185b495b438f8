"""The Linux parts of the OCI spec as typed values: mount options, mounts, namespaces, devices,
masked and read-only paths (pure: no process started, nothing mounted)."""

from __future__ import annotations

from typing import Any

import pytest

from wasmvisor.errors import InvalidArgument, Unimplemented
from wasmvisor.linux.mount_options import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_SLAVE,
    MS_STRICTATIME,
)
from wasmvisor.worker.spec_linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MountOptions,
    container_layout,
    parse_devices,
    parse_mount_options,
    parse_mounts,
    parse_namespaces,
    path_list,
    root_readonly,
    rootfs_propagation,
)

# What containerd 1.6's `ctr run` writes (seen in a bundle's config.json).
CTR_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro"]},
]


def test_flag_options_become_flags_and_the_rest_is_data() -> None:
    opts = parse_mount_options(["nosuid", "strictatime", "mode=755", "size=65536k"])
    assert opts == MountOptions(flags=MS_NOSUID | MS_STRICTATIME, data="mode=755,size=65536k")
    assert not opts.bind


def test_rbind_ro_is_a_recursive_bind_that_needs_a_read_only_remount() -> None:
    opts = parse_mount_options(["rbind", "ro", "nodev"])
    assert opts.flags == MS_BIND | MS_REC | MS_RDONLY | MS_NODEV
    assert opts.bind
    assert opts.remount_flags == MS_RDONLY | MS_NODEV


def test_plain_bind_needs_no_remount() -> None:
    opts = parse_mount_options(["bind"])
    assert (opts.flags, opts.remount_flags) == (MS_BIND, 0)


def test_later_options_win() -> None:
    assert parse_mount_options(["ro", "rw"]).flags == 0
    assert parse_mount_options(["noexec", "exec", "nosuid"]).flags == MS_NOSUID


def test_propagation_options_are_kept_apart_in_order() -> None:
    opts = parse_mount_options(["rbind", "rprivate", "slave"])
    assert opts.propagation == (MS_PRIVATE | MS_REC, MS_SLAVE)
    assert opts.flags == MS_BIND | MS_REC


def test_mounts_keep_their_order_and_name_themselves() -> None:
    mounts = parse_mounts({"mounts": CTR_MOUNTS})
    assert [m.destination for m in mounts] == ["/proc", "/dev", "/dev/pts", "/sys", "/data"]
    assert mounts[3].options.flags == MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY
    assert mounts[2].options.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    assert mounts[4].name == "mounts[4] /data"
    assert (mounts[4].type, mounts[4].source) == ("bind", "/srv/data")


@pytest.mark.parametrize(
    ("entry", "kind", "flags"),
    [
        ({"type": "none", "source": "/a", "options": ["rbind"]}, "bind", MS_BIND | MS_REC),
        ({"source": "/a", "options": ["bind"]}, "bind", MS_BIND),
        ({"type": "bind", "source": "/a"}, "bind", MS_BIND),
    ],
)
def test_a_bind_mount_is_known_by_its_options_or_its_type(entry: dict[str, Any], kind: str, flags: int) -> None:
    (mount,) = parse_mounts({"mounts": [{"destination": "/x", **entry}]})
    assert (mount.type, mount.options.flags) == (kind, flags)


def test_a_relative_bind_source_is_taken_from_the_bundle_and_destinations_are_normalized() -> None:
    (mount,) = parse_mounts({"mounts": [{"destination": "/a//b/../c/", "type": "bind", "source": "vol/x"}]},
                            bundle="/run/bundle")
    assert (mount.destination, mount.source) == ("/a/c", "/run/bundle/vol/x")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"destination": "data", "type": "tmpfs"}, "mounts[0] data: destination is not an absolute path"),
        ({"destination": "", "type": "tmpfs"}, "mounts[0]: destination must be a non-empty string"),
        ({"destination": "/data", "type": "bind"}, "mounts[0] /data: bind mount without a source"),
        ({"destination": "/data"}, "mounts[0] /data: no filesystem type"),
        ({"destination": "/data", "type": "tmpfs", "options": "ro"}, "mounts[0] /data: options must be a list"),
    ],
)
def test_bad_mounts_are_named(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_mounts({"mounts": [entry]})


def test_namespaces_of_the_spec_plus_mount_uts_ipc() -> None:
    spec = {"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/42/ns/net"}]}}
    found = {ns.type: ns for ns in parse_namespaces(spec)}
    assert set(found) == {"pid", "network", "mount", "uts", "ipc"}
    assert found["network"].path == "/proc/42/ns/net"
    assert found["network"].name == "linux.namespaces[1] network /proc/42/ns/net"
    assert (found["pid"].flag, found["network"].flag) == (CLONE_NEWPID, CLONE_NEWNET)
    assert {found[k].flag for k in ("mount", "uts", "ipc")} == {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC}
    assert not found["mount"].path


def test_without_a_linux_section_a_container_still_gets_mount_uts_ipc() -> None:
    assert sorted(ns.type for ns in parse_namespaces({})) == ["ipc", "mount", "uts"]


def test_a_listed_ipc_namespace_with_a_path_is_joined_not_created() -> None:
    found = parse_namespaces({"linux": {"namespaces": [{"type": "ipc", "path": "/proc/1/ns/ipc"}]}})
    assert [ns.path for ns in found if ns.type == "ipc"] == ["/proc/1/ns/ipc"]


@pytest.mark.parametrize(
    ("namespaces", "error", "message"),
    [
        ([{"type": "bogus"}], InvalidArgument, "linux.namespaces[0]: unknown namespace type 'bogus'"),
        ([{"type": "pid"}, {"type": "pid"}], InvalidArgument, "linux.namespaces[1] pid: listed twice"),
        ([{"type": "network", "path": "net"}], InvalidArgument, "path 'net' is not an absolute path"),
        ([{"type": "user"}], Unimplemented, "linux.namespaces[0] user: user namespaces are not supported yet"),
    ],
)
def test_bad_namespaces_are_named(namespaces: list[dict[str, str]], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        parse_namespaces({"linux": {"namespaces": namespaces}})
    assert message in str(raised.value)


def test_default_devices_and_a_spec_device() -> None:
    devices = parse_devices({"linux": {"devices": [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "uid": 5},
    ]}})
    by_path = {d.path: d for d in devices}
    assert set(by_path) == {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
                            "/dev/fuse"}
    assert (by_path["/dev/fuse"].major, by_path["/dev/fuse"].minor, by_path["/dev/fuse"].mode) == (10, 229, 0o600)
    assert by_path["/dev/null"].uid == 5
    assert (by_path["/dev/urandom"].kind, by_path["/dev/urandom"].major, by_path["/dev/urandom"].minor) == ("c", 1, 9)


def test_a_device_outside_dev_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not under /dev"):
        parse_devices({"linux": {"devices": [{"path": "/etc/x", "type": "c"}]}})


def test_paths_root_readonly_and_propagation() -> None:
    doc = {"root": {"path": "rootfs", "readonly": True},
           "linux": {"maskedPaths": ["/proc/kcore", "/sys//firmware/"], "rootfsPropagation": "rslave"}}
    assert path_list(doc, "maskedPaths") == ["/proc/kcore", "/sys/firmware"]
    assert path_list(doc, "readonlyPaths") == []
    assert root_readonly(doc) is True
    assert rootfs_propagation(doc) == MS_SLAVE | MS_REC
    assert rootfs_propagation({}) == MS_PRIVATE | MS_REC
    with pytest.raises(InvalidArgument, match="linux.maskedPaths\\[0\\] 'proc': not an absolute path"):
        path_list({"linux": {"maskedPaths": ["proc"]}}, "maskedPaths")


def test_container_layout_of_ctr_default_spec() -> None:
    doc = {"hostname": "box", "mounts": CTR_MOUNTS,
           "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                                    {"type": "network"}],
                     "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}}
    layout = container_layout(doc, "/b")
    assert layout.pid_namespace is not None and not layout.pid_namespace.path
    assert len(layout.namespaces) == 5 and len(layout.mounts) == 5
    assert (layout.hostname, layout.masked_paths, layout.readonly_paths) == ("box", ("/proc/kcore",), ("/proc/sys",))
    assert container_layout({}).pid_namespace is None


def test_a_hostname_longer_than_64_bytes_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="hostname"):
        container_layout({"hostname": "x" * 65})


def test_rro_is_a_read_only_bind_whose_submounts_are_read_only_too() -> None:
    rro = parse_mount_options(["rbind", "rro"])
    assert rro.recursive_readonly and rro.flags & MS_RDONLY
    assert not parse_mount_options(["rbind", "rro", "rw"]).recursive_readonly
    assert not parse_mount_options(["rbind", "rro", "rrw"]).flags & MS_RDONLY
    assert not parse_mount_options(["rbind", "ro"]).recursive_readonly  # rootfs treats rbind+ro as recursive
