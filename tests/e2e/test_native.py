"""Native containers under the wasmvisor runtime (issue 3 parts 2 and 3): busybox `sh -c`, a `#!`
script, a static pause binary like a pod's, the spec's user, capabilities and seccomp profile, and
a wasm guest held to the spec's uid. Images are built here (busybox from `busybox-static`)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import wasmvisor.image
from tests.e2e.ctr import RUNC_RUNTIME, Ctr
from tests.e2e.host import is_alive
from wasmvisor.image import FileSpec, build_busybox_image, build_oci_tar
from wasmvisor.supervisor.tasks import instance
from wasmvisor.worker.capabilities import CAP_NUMBERS, cap_mask

APPLETS = ("sh", "true", "false", "sleep", "cat", "echo", "env", "pwd", "ls", "id", "grep", "mkdir", "unshare")
CTR_DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""What `ctr run` puts in the spec's capability sets by default."""

PAUSE_C = r"""
/* A stand-in for a pod's pause container: sleeps until SIGINT or SIGTERM, then exits 0. */
#include <signal.h>
#include <unistd.h>
static void leave(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGINT, leave);
    signal(SIGTERM, leave);
    for (;;) pause();
}
"""


@contextlib.contextmanager
def image_user(user: str) -> Iterator[None]:
    """Images built inside get `config.User = user` (wasmvisor.image has no parameter for it;
    containerd turns it into the spec's process.user)."""
    original = wasmvisor.image.image_config

    def with_user(*args: Any, **kwargs: Any) -> dict[str, Any]:
        config = original(*args, **kwargs)
        config["config"]["User"] = user
        return config

    wasmvisor.image.image_config = with_user
    try:
        yield
    finally:
        wasmvisor.image.image_config = original


@pytest.fixture(scope="module")
def native_images(
    tmp_path_factory: pytest.TempPathFactory, guest_wasm: dict[str, Path], ctr: Ctr
) -> dict[str, str]:
    """name -> ref of this module's images, imported into the module's namespace."""
    out = tmp_path_factory.mktemp("native-images")
    refs: dict[str, str] = {}

    def add(name: str, build: Callable[[Path, str], object]) -> None:
        ref = f"docker.io/wasmvisor-test/native-{name}:latest"
        tar = out / f"{name}.tar"
        build(tar, ref)
        ctr.import_image(tar)
        refs[name] = ref

    script = FileSpec.executable(b"#!/bin/sh\necho \"script ran with $1\"\nexit 5\n")
    add("busybox", lambda tar, ref: build_busybox_image(tar, ref, applets=APPLETS))
    add("script", lambda tar, ref: build_busybox_image(tar, ref, applets=APPLETS, cmd=["/app.sh", "arg1"],
                                                       extra_files={"/app.sh": script}))
    with image_user("1000:1000"):
        add("busybox-user", lambda tar, ref: build_busybox_image(tar, ref, applets=APPLETS))

    pause_src = out / "pause.c"
    pause_src.write_text(PAUSE_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out / "pause"), str(pause_src)], check=True)
    add("pause", lambda tar, ref: build_oci_tar(
        tar, ref, {"/pause": FileSpec.executable((out / "pause").read_bytes())}, entrypoint=["/pause"],
        os="linux", architecture=wasmvisor.image.host_architecture()))

    cat: dict[str, bytes | FileSpec] = {
        "/cat_file.wasm": guest_wasm["cat_file"].read_bytes(),
        "/secret.txt": FileSpec.file(b"only root may read this\n", mode=0o600),
    }
    add("wasm-root", lambda tar, ref: build_oci_tar(tar, ref, cat, entrypoint=["/cat_file.wasm"],
                                                    cmd=["/secret.txt"]))
    with image_user("1000:1000"):
        add("wasm-user", lambda tar, ref: build_oci_tar(tar, ref, cat, entrypoint=["/cat_file.wasm"],
                                                        cmd=["/secret.txt"]))
    return refs


def test_busybox_sh_prints_hi_and_exits_3(ctr: Ctr, native_images: dict[str, str], container_id: str) -> None:
    result = ctr.run_container(native_images["busybox"], container_id, "sh", "-c", "echo hi; exit 3")

    assert (result.returncode, result.stdout) == (3, "hi\n"), result.output


def test_a_native_container_runs_past_the_workers_exit_grace(
    ctr: Ctr, native_images: dict[str, str], container_id: str
) -> None:
    # The worker's pipe closes when the native program is exec'd; the supervisor must not take
    # that for a worker that is exiting (it kills such a worker after EXIT_GRACE_SECONDS).
    seconds = instance.EXIT_GRACE_SECONDS + 2
    result = ctr.run_container(native_images["busybox"], container_id, "sh", "-c", f"sleep {seconds:.0f}; exit 3",
                               timeout=seconds + 30)

    assert result.returncode == 3, result.output


def test_shebang_script_entrypoint_runs_through_its_interpreter(
    ctr: Ctr, native_images: dict[str, str], container_id: str
) -> None:
    result = ctr.run_container(native_images["script"], container_id)

    assert (result.returncode, result.stdout) == (5, "script ran with arg1\n"), result.output


def test_native_container_runs_as_the_images_user(ctr: Ctr, native_images: dict[str, str], container_id: str) -> None:
    result = ctr.run_container(native_images["busybox-user"], container_id, "sh", "-c", "id -u; id -g")

    assert (result.returncode, result.stdout) == (0, "1000\n1000\n"), result.output


def test_wasm_guest_with_a_user_cannot_open_a_root_only_file(
    ctr: Ctr, native_images: dict[str, str], new_container_id: Callable[[str], str]
) -> None:
    as_root = ctr.run_container(native_images["wasm-root"], new_container_id("root"))
    as_user = ctr.run_container(native_images["wasm-user"], new_container_id("user"))

    assert (as_root.returncode, as_root.stdout) == (0, "only root may read this\n"), as_root.output
    assert as_user.returncode == 1, as_user.output
    assert "only root" not in as_user.stdout
    assert "denied" in as_user.stderr.lower() or "not permitted" in as_user.stderr.lower(), as_user.output


def test_native_container_has_the_default_capabilities_and_no_new_privs(
    ctr: Ctr, native_images: dict[str, str], container_id: str
) -> None:
    result = ctr.run_container(native_images["busybox"], container_id, "grep", "-E", "^(Cap|NoNewPrivs)",
                               "/proc/self/status")

    assert result.returncode == 0, result.output
    fields = dict(line.split(":\t") for line in result.stdout.splitlines())
    mask = cap_mask([CAP_NUMBERS[name] for name in CTR_DEFAULT_CAPS])
    assert int(fields["CapEff"], 16) == mask, result.stdout
    assert int(fields["CapPrm"], 16) == mask, result.stdout
    assert int(fields["CapBnd"], 16) == mask, result.stdout
    assert int(fields["CapAmb"], 16) == 0, result.stdout
    assert fields["NoNewPrivs"] == "1", result.stdout


def test_cap_drop_and_cap_add_reach_the_process(ctr: Ctr, native_images: dict[str, str], container_id: str) -> None:
    result = ctr.run_container(native_images["busybox"], container_id, "grep", "^CapEff", "/proc/self/status",
                               flags=["--cap-drop", "CAP_CHOWN", "--cap-add", "CAP_SYS_ADMIN"])

    assert result.returncode == 0, result.output
    caps = int(result.stdout.split()[-1], 16)
    assert not caps & (1 << CAP_NUMBERS["CAP_CHOWN"]) and caps & (1 << CAP_NUMBERS["CAP_SYS_ADMIN"]), result.stdout


def test_ctr_default_seccomp_profile_blocks_what_runc_blocks(
    ctr: Ctr, native_images: dict[str, str], new_container_id: Callable[[str], str]
) -> None:
    # Creating a user namespace needs no capability: only the seccomp profile stops it.
    script = "unshare -U true && echo allowed || echo blocked"
    seen = {}
    for runtime in (RUNC_RUNTIME, "io.containerd.wasmvisor.v1"):
        for flags in ([], ["--seccomp"]):
            name = f"{'runc' if runtime == RUNC_RUNTIME else 'wv'}{'-seccomp' if flags else ''}"
            result = ctr.run_container(native_images["busybox"], new_container_id(name), "sh", "-c", script,
                                       runtime=runtime, flags=flags)
            assert result.returncode == 0, result.output
            seen[name] = result.stdout.split()[-1]
    assert seen["runc-seccomp"] == "blocked"
    assert (seen["wv"], seen["wv-seccomp"]) == (seen["runc"], seen["runc-seccomp"]), seen


def test_custom_seccomp_profile_denies_mkdir_with_eperm(
    ctr: Ctr, native_images: dict[str, str], container_id: str, tmp_path: Path
) -> None:
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }))
    result = ctr.run_container(native_images["busybox"], container_id, "sh", "-c", "mkdir /tmp/d; echo $?",
                               flags=["--seccomp", "--seccomp-profile", str(profile)])

    assert result.returncode == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "1", result.output
    assert "Operation not permitted" in result.stderr, result.output


def test_sigterm_to_a_trapping_shell_ends_it_with_the_trap_code(
    ctr: Ctr, native_images: dict[str, str], container_id: str
) -> None:
    run = ctr.start_container(native_images["busybox"], container_id, "sh", "-c",
                              'trap "exit 7" TERM; echo ready; while :; do sleep 1; done')
    try:
        run.wait_for_stdout("ready\n", timeout=20)
        ctr.kill(container_id, "SIGTERM")
        assert run.wait(timeout=20).returncode == 7
    finally:
        run.kill()


def test_pause_binary_runs_until_sigterm_like_a_pods_pause_container(
    ctr: Ctr, native_images: dict[str, str], container_id: str
) -> None:
    started = ctr.run_container(native_images["pause"], container_id, rm=False, flags=["--detach", "--null-io"])
    assert started.returncode == 0, started.output
    ctr.wait_for_task_status(container_id, "RUNNING")
    with ctr.events() as events:
        ctr.kill(container_id, signal.Signals.SIGTERM.name)
        exit_event = events.wait_for("/tasks/exit", container_id, timeout=20)
    assert exit_event.payload.get("exit_status", 0) == 0, exit_event.line
    ctr.remove(container_id)


def test_missing_native_program_exits_127_with_a_message(
    ctr: Ctr, native_images: dict[str, str], container_id: str
) -> None:
    result = ctr.run_container(native_images["busybox"], container_id, "/bin/no-such-program")

    assert result.returncode != 0
    assert "no-such-program" in result.output, result.output


def _task_pids(ctr: Ctr, container_id: str) -> list[int]:
    """`ctr task ps`: the pids of the task's cgroup."""
    listing = ctr.run("task", "ps", container_id, check=True, timeout=30).stdout
    return [int(line.split()[0]) for line in listing.splitlines()[1:] if line.split()]


def test_kill_all_sigterm_reaches_the_background_child_that_pid_1_would_not_pass_on(
    ctr: Ctr, native_images: dict[str, str], container_id: str
) -> None:
    # sh is PID 1 of its pid namespace without a TERM trap: the kernel drops SIGTERM sent to it.
    # The sleep is not PID 1: with --all it dies of SIGTERM, which ends `wait $!`, and sh with 143.
    run = ctr.start_container(native_images["busybox"], container_id, "sh", "-c",
                              "sleep 1000 & echo ready; wait $!")
    try:
        run.wait_for_stdout("ready\n", timeout=20)
        result = ctr.run("task", "kill", "--all", "-s", "SIGTERM", container_id, timeout=30)
        assert result.returncode == 0, result.stderr
        assert run.wait(timeout=20).returncode == 143
    finally:
        run.kill()


def test_kill_all_sigkill_ends_the_shell_and_its_background_child_and_nothing_is_left(
    ctr: Ctr, native_images: dict[str, str], container_id: str
) -> None:
    run = ctr.start_container(native_images["busybox"], container_id, "sh", "-c",
                              "sleep 1000 & echo ready; wait")
    try:
        run.wait_for_stdout("ready\n", timeout=20)
        pids = _task_pids(ctr, container_id)
        assert len(pids) >= 2, pids  # sh and sleep (and the relay)
        result = ctr.run("task", "kill", "--all", "-s", "SIGKILL", container_id, timeout=30)
        assert result.returncode == 0, result.stderr
        assert run.wait(timeout=20).returncode == 137
        assert [pid for pid in pids if is_alive(pid)] == []
    finally:
        run.kill()
