"""The container process's identity: parsing of `process` (pure) and, in forked children running
as root, what the process looks like after apply_identity (ids, groups, capabilities, limits)."""

from __future__ import annotations

import os
import resource
from typing import Any

import pytest

from tests.unit.worker.child import ChildError, in_child, run_child
from wasmvisor.errors import InvalidArgument
from wasmvisor.worker.capabilities import CAP_NUMBERS, cap_mask
from wasmvisor.worker.identity import RLIM_INFINITY_U64, apply_identity, parse_identity, parse_rlimits

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing uid and capabilities needs root")

CTR_DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
"""The capability sets of `ctr run`'s default spec (containerd 1.6.20)."""


def status_fields() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def observed() -> dict[str, Any]:
    """What the process looks like now (run in the child)."""
    status = status_fields()
    umask = os.umask(0)
    os.umask(umask)
    return {
        "uid": os.getresuid(),
        "gid": os.getresgid(),
        "groups": sorted(os.getgroups()),
        "caps": {key: int(status[key], 16) for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
        "no_new_privs": status["NoNewPrivs"],
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "core": resource.getrlimit(resource.RLIMIT_CORE),
        "umask": umask,
    }


def applied(process: dict[str, Any]) -> dict[str, Any]:
    def body() -> dict[str, Any]:
        apply_identity(process)
        return observed()

    return in_child(body)


# --- pure parsing ----------------------------------------------------------------------------------


def test_rlimits_parse_names_and_infinity() -> None:
    limits = parse_rlimits([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
                            {"type": "RLIMIT_CORE", "soft": RLIM_INFINITY_U64, "hard": RLIM_INFINITY_U64}])
    assert [(lim.name, lim.number, lim.soft, lim.hard) for lim in limits] == [
        ("RLIMIT_NOFILE", 7, 1024, 4096), ("RLIMIT_CORE", 4, RLIM_INFINITY_U64, RLIM_INFINITY_U64)]


@pytest.mark.parametrize(
    ("process", "message"),
    [
        ({"rlimits": [{"type": "RLIMIT_FLY", "soft": 1, "hard": 1}]},
         r"process.rlimits\[0\]: unknown rlimit type 'RLIMIT_FLY'"),
        ({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": -1, "hard": 1}]}, r"process.rlimits\[0\].soft -1"),
        ({"user": {"uid": -5}}, r"process.user.uid -5"),
        ({"user": {"uid": 0, "gid": "root"}}, r"process.user.gid 'root'"),
        ({"user": {"additionalGids": [1, "x"]}}, r"process.user.additionalGids\[1\]"),
        ({"umask": 0o1000}, r"process.umask 512"),
        ({"noNewPrivileges": "yes"}, r"process.noNewPrivileges must be true or false"),
        ({"capabilities": {"bounding": "CAP_CHOWN"}}, r"process.capabilities.bounding must be a list"),
    ],
    ids=["unknown-rlimit", "negative-rlimit", "negative-uid", "gid-name", "bad-gid", "umask", "nnp", "caps-string"],
)
def test_bad_process_fields_are_invalid_arguments_naming_the_field(process: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_identity(process, last_cap=40)


def test_absent_fields_change_nothing() -> None:
    identity = parse_identity({"args": ["x"]}, last_cap=40)
    assert identity.uid is None and identity.gid is None and identity.umask is None
    assert identity.capabilities is None and identity.rlimits == () and not identity.no_new_privileges


# --- in forked children --------------------------------------------------------------------------


@needs_root
def test_ctr_default_process_as_root_keeps_exactly_the_default_caps() -> None:
    process = {
        "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
        "capabilities": {"bounding": CTR_DEFAULT_CAPS, "effective": CTR_DEFAULT_CAPS, "permitted": CTR_DEFAULT_CAPS},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }
    seen = applied(process)

    mask = cap_mask([CAP_NUMBERS[name] for name in CTR_DEFAULT_CAPS])
    assert seen["caps"] == {"CapInh": 0, "CapPrm": mask, "CapEff": mask, "CapBnd": mask, "CapAmb": 0}
    assert seen["uid"] == [0, 0, 0] and seen["gid"] == [0, 0, 0] and seen["groups"] == [0]
    assert seen["nofile"] == [1024, 1024]
    assert seen["no_new_privs"] == "1"


@needs_root
def test_non_root_user_gets_ids_groups_and_its_ambient_caps_through_keepcaps() -> None:
    caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    process = {
        "user": {"uid": 1000, "gid": 1001, "additionalGids": [2000, 2001]},
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps,
                         "ambient": ["CAP_NET_BIND_SERVICE"]},
        "umask": 0o027,
    }
    seen = applied(process)

    assert seen["uid"] == [1000, 1000, 1000]
    assert seen["gid"] == [1001, 1001, 1001]
    assert seen["groups"] == [2000, 2001]
    mask = cap_mask([CAP_NUMBERS[name] for name in caps])
    bind = 1 << CAP_NUMBERS["CAP_NET_BIND_SERVICE"]
    # What a native program run by runc with this spec has after its exec: a non-root uid keeps
    # only the ambient set in effective and permitted.
    assert seen["caps"] == {"CapInh": mask, "CapPrm": bind, "CapEff": bind, "CapBnd": mask, "CapAmb": bind}
    assert seen["umask"] == 0o027
    assert seen["no_new_privs"] == "0"


@needs_root
def test_non_root_user_with_dac_override_only_in_effective_has_no_caps_as_after_an_exec() -> None:
    seen = applied({"user": {"uid": 1000, "gid": 1000},
                    "capabilities": {"bounding": CTR_DEFAULT_CAPS, "effective": CTR_DEFAULT_CAPS,
                                     "permitted": CTR_DEFAULT_CAPS}})

    assert seen["caps"]["CapEff"] == seen["caps"]["CapPrm"] == 0
    assert seen["caps"]["CapBnd"] == cap_mask([CAP_NUMBERS[name] for name in CTR_DEFAULT_CAPS])


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static")
@needs_root
@pytest.mark.parametrize("uid", [0, 1000])
def test_caps_taken_by_the_worker_are_what_an_exec_keeps(uid: int) -> None:
    caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"]
    process = {"user": {"uid": uid, "gid": uid},
               "capabilities": {"bounding": caps, "effective": caps[:1], "permitted": caps[:2],
                                "inheritable": caps[1:], "ambient": ["CAP_KILL"]}}

    def body() -> None:
        apply_identity(process)
        before = observed()["caps"]
        os.write(1, " ".join(f"{k}:{v:016x}" for k, v in before.items()).encode() + b"\n")
        os.execv("/bin/busybox", ["grep", "^Cap", "/proc/self/status"])

    code, out = run_child(body)
    assert code == 0, out
    first, *after = out.decode().splitlines()
    in_worker = dict(item.split(":") for item in first.split())
    after_exec = dict(line.split(":\t") for line in after)
    assert in_worker == after_exec


@needs_root
def test_non_root_user_without_capabilities_in_the_spec_has_none() -> None:
    seen = applied({"user": {"uid": 1000, "gid": 1000}})

    assert seen["uid"] == [1000, 1000, 1000]
    assert seen["groups"] == []
    assert seen["caps"]["CapEff"] == seen["caps"]["CapPrm"] == 0


@needs_root
def test_non_root_user_cannot_read_a_root_only_file(tmp_path: Any) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    tmp_path.chmod(0o755)

    def body() -> str:
        apply_identity({"user": {"uid": 1000, "gid": 1000}, "capabilities": {}})
        try:
            with open(secret) as f:
                return f.read()
        except PermissionError as exc:
            return f"denied: {exc.strerror}"

    assert in_child(body) == "denied: Permission denied"


@needs_root
def test_rlimits_are_set_and_raising_a_hard_limit_fails_naming_it() -> None:
    seen = applied({"rlimits": [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                                {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]})
    assert seen["core"] == [0, 0]
    assert seen["nofile"] == [100, 200]

    def raise_after_lowering() -> None:
        apply_identity({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20},
                                    {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 30}]})

    # Without CAP_SYS_RESOURCE (dropped here first; this machine's root lacks it anyway).
    def body() -> None:
        apply_identity({"capabilities": {"bounding": ["CAP_SETPCAP"], "effective": ["CAP_SETPCAP"],
                                         "permitted": ["CAP_SETPCAP"]}})
        raise_after_lowering()

    with pytest.raises(ChildError, match=r"process.rlimits RLIMIT_NOFILE soft 10 hard 30: setrlimit: "
                                         r"Operation not permitted"):
        in_child(body)


@needs_root
def test_setgroups_failure_without_setgid_cap_names_the_groups() -> None:
    def body() -> None:
        apply_identity({"user": {"uid": 1000, "gid": 1000}, "capabilities": {}})  # no CAP_SETUID left
        apply_identity({"user": {"uid": 70000}})

    with pytest.raises(ChildError) as info:
        in_child(body)
    assert info.value.kind == "InvalidArgument"
    assert "process.user.additionalGids []: setgroups: Operation not permitted" in info.value.message


@needs_root
def test_uid_change_without_setuid_cap_fails_naming_uid() -> None:
    def body() -> None:
        keep = ["CAP_SETGID"]
        apply_identity({"capabilities": {"bounding": keep, "effective": keep, "permitted": keep}})
        apply_identity({"user": {"uid": 70000, "gid": 0}})

    with pytest.raises(ChildError, match=r"process.user.uid 70000: setuid: Operation not permitted"):
        in_child(body)


@needs_root
def test_ambient_cap_not_in_inheritable_fails_naming_it() -> None:
    def body() -> None:
        apply_identity({"capabilities": {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"],
                                         "ambient": ["CAP_KILL"]}})

    with pytest.raises(ChildError, match=r"process.capabilities.ambient CAP_KILL: Operation not permitted"):
        in_child(body)
