"""The spec's seccomp profile: parsing (pure), filter building, and programs run under it
(exec_native of the host's static busybox in forked children)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.unit.worker.child import run_child
from wasmvisor.errors import InvalidArgument, Unimplemented
from wasmvisor.worker.identity import apply_identity
from wasmvisor.worker.native import exec_native, prepare_seccomp
from wasmvisor.worker.seccomp import (
    SCMP_ACT_ALLOW,
    SCMP_ACT_ERRNO,
    SCMP_ACT_KILL_PROCESS,
    SCMP_ACT_KILL_THREAD,
    SCMP_ACT_LOG,
    SCMP_ACT_TRACE,
    SCMP_ACT_TRAP,
    Condition,
    Rule,
    action_value,
    arch_name,
    compile_profile,
    condition,
    parse_profile,
    resolve_syscall,
    rule_condition_sets,
)

BUSYBOX = "/bin/busybox"
CTR_DEFAULT = Path(__file__).parent / "data" / "ctr_default_seccomp.json"
"""`linux.seccomp` of the spec `ctr run --seccomp` (containerd 1.6.20) writes for the default caps."""
pytestmark = pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static")


def ctr_default_profile() -> dict[str, Any]:
    profile: dict[str, Any] = json.loads(CTR_DEFAULT.read_text())
    return profile


def deny(names: list[str], **extra: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO", **extra}]}


def busybox(profile: dict[str, Any] | None, *args: str, cwd: str = "/") -> tuple[int, str]:
    code, out = run_child(lambda: exec_native(BUSYBOX, list(args), ["PATH=/bin"], cwd, profile))
    return code, out.decode()


# --- pure -----------------------------------------------------------------------------------------


def test_actions_carry_their_errno() -> None:
    assert action_value("SCMP_ACT_ALLOW", None, "x") == SCMP_ACT_ALLOW
    assert action_value("SCMP_ACT_ERRNO", None, "x") == SCMP_ACT_ERRNO | 1  # EPERM by default
    assert action_value("SCMP_ACT_ERRNO", 38, "x") == SCMP_ACT_ERRNO | 38
    assert action_value("SCMP_ACT_TRACE", None, "x") == SCMP_ACT_TRACE | 1
    assert action_value("SCMP_ACT_KILL", None, "x") == SCMP_ACT_KILL_THREAD
    assert action_value("SCMP_ACT_KILL_PROCESS", None, "x") == SCMP_ACT_KILL_PROCESS
    assert action_value("SCMP_ACT_TRAP", None, "x") == SCMP_ACT_TRAP
    assert action_value("SCMP_ACT_LOG", None, "x") == SCMP_ACT_LOG


@pytest.mark.parametrize(
    ("doc", "error", "message"),
    [
        ({"defaultAction": "SCMP_ACT_FLY"}, InvalidArgument,
         r"linux.seccomp.defaultAction: unknown action 'SCMP_ACT_FLY'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                           "errnoRet": 70000}]},
         InvalidArgument, r"linux.seccomp.syscalls\[0\].action: errnoRet 70000"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                           "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
         InvalidArgument, r"linux.seccomp.syscalls\[0\].args\[0\].index 6"),
        ({"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
         InvalidArgument, r"linux.seccomp.syscalls\[0\].args\[0\].op: unknown comparison 'SCMP_CMP_ABOUT'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["X86"]}, InvalidArgument,
         r"linux.seccomp.architectures\[0\]: unknown architecture 'X86'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FLY"]}, InvalidArgument,
         r"linux.seccomp.flags\[0\]: unknown flag"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, Unimplemented, r"SCMP_ACT_NOTIFY is not supported"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/l.sock"}, Unimplemented, r"listenerPath"),
    ],
    ids=["action", "errno", "index", "op", "arch", "flag", "notify", "listener"],
)
def test_bad_profiles_are_refused_naming_the_entry(doc: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_profile(doc)


def test_conditions_and_arch_names() -> None:
    assert condition({"index": 1, "value": 5, "valueTwo": 7, "op": "SCMP_CMP_MASKED_EQ"}, "x") == Condition(1, 7, 5, 7)
    assert condition({"index": 0, "op": "SCMP_CMP_NE"}, "x") == Condition(0, 1, 0, 0)
    assert arch_name("SCMP_ARCH_X86_64", "x") == "x86_64"
    assert arch_name("SCMP_ARCH_AARCH64", "x") == "aarch64"


def test_conditions_on_distinct_args_are_anded_and_on_one_arg_ored_like_runc() -> None:
    a0, a1, a0b = Condition(0, 4, 1, 0), Condition(1, 4, 2, 0), Condition(0, 4, 3, 0)
    assert rule_condition_sets(Rule(("x",), 0, (a0, a1))) == [(a0, a1)]
    assert rule_condition_sets(Rule(("x",), 0, (a0, a0b))) == [(a0,), (a0b,)]
    assert rule_condition_sets(Rule(("x",), 0, ())) == [()]


def test_ctr_default_profile_parses_and_builds_with_every_name_known() -> None:
    profile = parse_profile(ctr_default_profile())
    assert profile.architectures == ("x86_64", "x86", "x32")
    compiled = compile_profile(profile)
    assert compiled.skipped == ()
    assert len(compiled.program) % 8 == 0 and compiled.flags == 0


def test_unknown_syscall_names_are_skipped_like_runc() -> None:
    assert resolve_syscall("read") == 0
    assert resolve_syscall("no_such_syscall") is None
    assert compile_profile(parse_profile(deny(["mkdir", "no_such_syscall"]))).skipped == ("no_such_syscall",)


# --- programs under a filter ----------------------------------------------------------------------


def test_without_a_profile_mkdir_works(tmp_path: Path) -> None:
    assert busybox(None, "mkdir", str(tmp_path / "d"))[0] == 0
    assert (tmp_path / "d").is_dir()


def test_profile_denying_mkdir_gives_eperm_and_the_rest_still_runs(tmp_path: Path) -> None:
    code, out = busybox(deny(["mkdir", "mkdirat"]), "sh", "-c", f"mkdir {tmp_path}/d; echo after $?")
    assert code == 0
    assert "Operation not permitted" in out and "after 1" in out
    assert not (tmp_path / "d").exists()


def test_errno_ret_is_the_error_the_program_sees(tmp_path: Path) -> None:
    code, out = busybox(deny(["mkdir", "mkdirat"], errnoRet=28), "mkdir", str(tmp_path / "d"))
    assert code == 1
    assert "No space left on device" in out


def test_arg_conditions_select_calls_by_value(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    target.chmod(0o600)
    modes = [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 0o707, "op": "SCMP_CMP_EQ"}]
    at_modes = [dict(m, index=2) for m in modes]
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": modes},
        {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "args": at_modes},
    ]}
    script = f"chmod 644 {target}; echo $?; chmod 777 {target}; echo $?; chmod 707 {target}; echo $?"
    code, out = busybox(profile, "sh", "-c", script)
    assert code == 0
    assert [line for line in out.splitlines() if line.isdigit()] == ["0", "1", "1"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_kill_process_action_ends_the_program_with_sigsys(tmp_path: Path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    code, _ = busybox(profile, "mkdir", str(tmp_path / "d"))
    assert code == -signal.SIGSYS


def test_filter_flags_are_given_to_seccomp(tmp_path: Path) -> None:
    profile = deny(["mkdir", "mkdirat"])
    profile["flags"] = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"]
    assert compile_profile(parse_profile(profile)).flags == 3
    code, out = busybox(profile, "mkdir", str(tmp_path / "d"))
    assert code == 1 and "Operation not permitted" in out


def test_prepared_profile_is_used_at_exec(tmp_path: Path) -> None:
    profile = deny(["mkdir", "mkdirat"])

    def body() -> None:
        prepare_seccomp(profile)
        exec_native(BUSYBOX, ["mkdir", str(tmp_path / "d")], [], "/", profile)

    code, out = run_child(body)
    assert code == 1 and "Operation not permitted" in out.decode()


def test_non_root_without_no_new_privs_still_gets_the_filter(tmp_path: Path) -> None:
    def body() -> None:
        apply_identity({"user": {"uid": 1000, "gid": 1000}, "capabilities": {}})
        exec_native(BUSYBOX, ["sh", "-c", "grep NoNewPrivs /proc/self/status; mkdir /tmp/wv-x-$$"], [], "/",
                    deny(["mkdir", "mkdirat"]))

    code, out = run_child(body)
    assert code == 1
    assert "NoNewPrivs:\t1" in out.decode() and "Operation not permitted" in out.decode()


def test_ctr_default_profile_runs_busybox_and_blocks_privileged_calls(tmp_path: Path) -> None:
    profile = ctr_default_profile()
    assert busybox(profile, "true") == (0, "")
    assert busybox(profile, "sh", "-c", "echo hi; exit 3") == (3, "hi\n")
    code, out = busybox(profile, "unshare", "-m", "true")
    assert code != 0 and "Operation not permitted" in out
    code, out = busybox(profile, "mount", "-t", "tmpfs", "none", str(tmp_path))
    assert code != 0
    # personality(PER_LINUX32) is one of the values the profile's arg conditions allow.
    assert busybox(profile, "linux32", "true")[0] == 0
