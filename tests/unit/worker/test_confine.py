"""What a wasm worker takes away before its guest runs: the mounts it hides, the mounts it makes nodev,
and the identity it applies (pure parts)."""

from __future__ import annotations

from wasmvisor.ipc import messages
from wasmvisor.worker.confine import confined_process, hidden_mounts, nodev_mounts
from wasmvisor.worker.identity import parse_identity

ROOT = "/run/c/rootfs"
POINTS = [
    "/", "/proc", "/run", ROOT, f"{ROOT}/proc", f"{ROOT}/dev", f"{ROOT}/dev/pts", f"{ROOT}/dev/shm",
    f"{ROOT}/sys", f"{ROOT}/sys/fs/cgroup", f"{ROOT}/proc/keys", f"{ROOT}/proc/sys", f"{ROOT}/data",
    f"{ROOT}/dev/termination-log", f"{ROOT}/processed", f"{ROOT}/data",
]


def test_proc_and_sys_of_the_root_are_detached_at_their_top_mounts_only() -> None:
    assert hidden_mounts(ROOT, POINTS) == [f"{ROOT}/proc", f"{ROOT}/sys"]


def test_a_mount_below_proc_without_proc_itself_is_detached_on_its_own() -> None:
    assert hidden_mounts(ROOT, [ROOT, f"{ROOT}/proc/sys", f"{ROOT}/proc/keys"]) == [
        f"{ROOT}/proc/sys", f"{ROOT}/proc/keys"]


def test_stacked_proc_mounts_are_each_detached() -> None:
    assert hidden_mounts(ROOT, [ROOT, f"{ROOT}/proc", f"{ROOT}/proc"]) == [f"{ROOT}/proc", f"{ROOT}/proc"]


def test_every_mount_of_the_root_but_dev_becomes_nodev_once() -> None:
    assert nodev_mounts(ROOT, POINTS) == [ROOT, f"{ROOT}/data", f"{ROOT}/processed"]


def test_the_guest_identity_keeps_the_user_and_drops_every_capability() -> None:
    process = {
        "user": {"uid": 1000, "gid": 1000},
        "capabilities": {"bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"],
                         "permitted": ["CAP_SYS_ADMIN"], "ambient": ["CAP_NET_RAW"]},
        "noNewPrivileges": False,
    }
    identity = parse_identity(confined_process(process), last_cap=40)
    assert (identity.uid, identity.gid, identity.no_new_privileges) == (1000, 1000, True)
    caps = identity.capabilities
    assert caps is not None
    assert (caps.bounding, caps.effective, caps.permitted, caps.inheritable, caps.ambient) == (
        frozenset(), frozenset(), frozenset(), frozenset(), ())
    assert process["noNewPrivileges"] is False, "the spec itself is left as it was"


def test_exited_carries_the_workers_last_words_and_reads_without_them() -> None:
    note = "guest /app.wasm trapped: wasm trap: unreachable"
    assert messages.decode(messages.encode(messages.Exited(code=137, at_ns=5, note=note))) == messages.Exited(
        code=137, at_ns=5, note=note)
    assert messages.decode(b'{"v": 2, "kind": "exited", "code": 0, "at_ns": 1}') == messages.Exited(code=0, at_ns=1)
