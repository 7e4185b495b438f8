"""The core issue's acceptance tests: wasm images run through `ctr run --runtime io.containerd.wasmvisor.v1`
against a private containerd, as a user would run them.

Exit codes as ctr prints them: the guest's own code, 137 for a trap or SIGKILL, 143 for SIGTERM.
ctr 1.6 notes: arguments after the container id replace the image's whole entrypoint+cmd; a task's
exit status is not in `ctr task ls` (only RUNNING/STOPPED), it is in the /tasks/exit event
(`exit_status`, omitted when 0) and in the exit code of a foreground `ctr run`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr
from tests.e2e.host import mounts_under, process_titles, process_tree, processes_titled
from wasmvisor.image import FileSpec, build_oci_tar

ImageRef = Callable[[str], str]


def _eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll `check` until it returns a falsy value (nothing left), else fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        left = check()
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still there after {timeout}s: {left}")
        time.sleep(0.05)


# --- running guests ----------------------------------------------------------------------------


def test_ctr_run_prints_hello_and_exits_0(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    result = ctr.run_container(image("hello"), container_id)

    assert (result.returncode, result.stdout, result.stderr) == (0, "hello from wasmvisor\n", ""), result.output


def test_guest_exit_code_42_is_the_exit_code_of_ctr_run(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    result = ctr.run_container(image("exit42"), container_id)

    assert (result.returncode, result.stdout, result.stderr) == (42, "", ""), result.output


def test_entrypoint_with_hash_func_calls_that_export(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    # The image's entrypoint is ["/custom.wasm#greet"]: `greet` runs, `_start` does not.
    result = ctr.run_container(image("custom"), container_id)

    assert (result.returncode, result.stdout) == (0, "greet called\n"), result.stderr


def test_trapping_guest_exits_137(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    result = ctr.run_container(image("trap"), container_id)

    assert result.returncode == 137, result.output
    assert result.stdout == ""


def test_image_entrypoint_runs_with_image_env_when_no_args(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    result = ctr.run_container(image("echo-args-env"), container_id)

    assert (result.returncode, result.stdout) == (0, "argv[0]=/echo_args_env.wasm\nenv WV_IMAGE=from-image\n"), (
        result.stderr
    )


def test_args_after_the_image_ref_and_env_flags_reach_the_guest(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    # ctr 1.6: the words after the id replace the image's entrypoint and cmd, so the module comes first.
    result = ctr.run_container(
        image("echo-args-env"),
        container_id,
        "/echo_args_env.wasm",
        "one",
        "two words",
        flags=["--env", "WV_USER=from-cli"],
    )

    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == ["argv[0]=/echo_args_env.wasm", "argv[1]=one", "argv[2]=two words"]
    assert sorted(lines[3:]) == ["env WV_IMAGE=from-image", "env WV_USER=from-cli"]


def test_guest_reads_a_file_from_the_image(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    # entrypoint ["/cat_file.wasm"], cmd ["/etc/greeting.txt"]
    result = ctr.run_container(image("cat-file"), container_id)

    assert (result.returncode, result.stdout) == (0, "a file from the image\n"), result.stderr


def test_stdin_is_piped_to_the_guest(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    text = "line one\nline two\n"

    result = ctr.run_container(image("stdin"), container_id, input=text)

    assert (result.returncode, result.stdout) == (0, text), result.stderr


@pytest.mark.parametrize(
    ("cwd", "expected"),
    [(None, "root data\n"), ("/app", "app data\n")],
    ids=["default-cwd-is-root", "cwd-flag"],
)
def test_relative_paths_resolve_against_the_working_dir(
    ctr: Ctr, image: ImageRef, container_id: str, cwd: str | None, expected: str
) -> None:
    # The image holds /data.txt ("root data") and /app/data.txt ("app data"); the guest chdirs to $PWD
    # (wasmvisor's convention for process.cwd, which WASI preview 1 cannot pass) and opens "data.txt".
    result = ctr.run_container(image("cwd"), container_id, flags=["--cwd", cwd] if cwd else [])

    assert result.returncode == 0, result.output
    first, _, rest = result.stdout.partition("\n")
    assert first == f"cwd={cwd or '/'}"
    assert rest == expected


# --- signals, task state, events ---------------------------------------------------------------


def _kill_sleeping_guest(ctr: Ctr, image: ImageRef, container_id: str, signal: str) -> int:
    run = ctr.start_container(image("sleep"), container_id)
    try:
        run.wait_for_stdout("sleeping\n", timeout=20)
        kill = ctr.kill(container_id, signal)
        assert kill.returncode == 0, kill.stderr
        return run.wait(timeout=20).returncode
    finally:
        run.kill()


def test_sigterm_ends_sleeping_guest_with_143(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    assert _kill_sleeping_guest(ctr, image, container_id, "SIGTERM") == 143


def test_sigkill_ends_sleeping_guest_with_137(ctr: Ctr, image: ImageRef, container_id: str) -> None:
    assert _kill_sleeping_guest(ctr, image, container_id, "SIGKILL") == 137


def test_a_plain_wasi_guest_runs_in_the_compiled_runner_not_in_python(
    ctr: Ctr, image: ImageRef, container_id: str
) -> None:
    # The worker execs wasmvisor/worker/runner.c at Start (docs/internals.md, "The compiled runner"): the
    # task's process keeps the worker's title but is no Python process any more.
    run = ctr.start_container(image("sleep"), container_id)
    try:
        run.wait_for_stdout("sleeping\n", timeout=20)
        [worker] = processes_titled(f"wasmvisor-worker {ctr.namespace}/{container_id}")
        comm = Path(f"/proc/{worker}/comm").read_text().strip()
        maps = Path(f"/proc/{worker}/maps").read_text()
        exe = os.readlink(f"/proc/{worker}/exe")  # the node's dynamic loader, which loaded the runner
        assert comm == "wasmvisor-run"
        assert "_libwasmtime.so" in maps and "wasmvisor-runner" in maps
        assert "python" not in os.path.basename(exe)
        assert ctr.kill(container_id, "SIGTERM").returncode == 0
        assert run.wait(timeout=20).returncode == 143
    finally:
        run.kill()


def test_task_ls_shows_running_then_stopped_and_events_come_in_order(
    ctr: Ctr, image: ImageRef, container_id: str
) -> None:
    with ctr.events() as events:
        started = ctr.run_container(image("sleep"), container_id, rm=False, flags=["--detach", "--null-io"])
        assert started.returncode == 0, started.output

        running = ctr.wait_for_task_status(container_id, "RUNNING")
        workers = processes_titled(f"wasmvisor-worker {ctr.namespace}/{container_id}")
        assert workers == [running.pid], "the task's pid is its worker's pid"

        assert ctr.kill(container_id, "SIGKILL").returncode == 0
        ctr.wait_for_task_status(container_id, "STOPPED")
        exit_event = events.wait_for("/tasks/exit", container_id)
        ctr.remove(container_id)
        events.wait_for("/tasks/delete", container_id)

    assert exit_event.payload.get("exit_status") == 137, exit_event.line
    assert exit_event.payload.get("pid") == running.pid, exit_event.line
    topics = [t for t in events.topics(container_id) if t.startswith("/tasks/")]
    assert topics == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert container_id not in ctr.containers()


# --- processes ---------------------------------------------------------------------------------


def test_a_new_groups_supervisor_is_forked_by_this_containerds_template(
    containerd: PrivateContainerd, ctr: Ctr, image: ImageRef, container_id: str
) -> None:
    run = ctr.start_container(image("sleep"), container_id)
    try:
        run.wait_for_stdout("sleeping\n", timeout=20)
        [supervisor] = processes_titled(f"wasmvisor-shim {ctr.namespace}/{container_id}")
        parent = _ppid(supervisor)
        assert process_titles()[parent].startswith(f"wasmvisor-template -address {containerd.address} ")
        assert parent in containerd.leftover_shims(), "the fixture's stop would not find the template"
        ctr.kill(container_id, "SIGKILL")
        assert run.wait(timeout=20).returncode == 137
    finally:
        run.kill()


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


# --- nothing left behind -----------------------------------------------------------------------


def test_ctr_run_rm_leaves_no_process_mount_or_socket(
    containerd: PrivateContainerd, ctr: Ctr, image: ImageRef, container_id: str
) -> None:
    socket = containerd.shim_socket(ctr.namespace, container_id)
    bundle = containerd.bundle_dir(ctr.namespace, container_id)
    run = ctr.start_container(image("sleep"), container_id)
    try:
        run.wait_for_stdout("sleeping\n", timeout=20)
        supervisors = processes_titled(f"wasmvisor-shim {ctr.namespace}/{container_id}")
        workers = processes_titled(f"wasmvisor-worker {ctr.namespace}/{container_id}")
        # While it runs: one supervisor, one worker, the group's socket, the rootfs mounted in the bundle.
        assert len(supervisors) == 1 and len(workers) == 1, (supervisors, workers)
        assert socket.is_socket(), f"no shim socket at {socket}"
        assert mounts_under(bundle / "rootfs"), f"rootfs not mounted under {bundle}"
        started = set(process_tree(supervisors[0])) | set(workers)

        ctr.kill(container_id, "SIGKILL")
        assert run.wait(timeout=20).returncode == 137
    finally:
        run.kill()

    # After --rm: the container is gone and the supervisor has shut down, taking its children along.
    assert container_id not in ctr.containers()
    _eventually(lambda: _still_wasmvisor(started))
    _eventually(lambda: socket.exists() and str(socket))
    _eventually(lambda: mounts_under(bundle))
    _eventually(lambda: bundle.exists() and str(bundle))


def _still_wasmvisor(pids: set[int]) -> list[int]:
    """Those of `pids` still running as wasmvisor processes (a reused pid or a zombie does not count)."""
    titles = process_titles()
    return sorted(pid for pid in pids if titles.get(pid, "").startswith("wasmvisor-"))


def test_quick_guest_with_rm_leaves_no_supervisor_or_socket(
    containerd: PrivateContainerd, ctr: Ctr, image: ImageRef, container_id: str
) -> None:
    result = ctr.run_container(image("hello"), container_id)

    assert result.returncode == 0, result.output
    title = f"{ctr.namespace}/{container_id}"
    _eventually(lambda: processes_titled(f"wasmvisor-shim {title}") + processes_titled(f"wasmvisor-worker {title}"))
    socket = containerd.shim_socket(ctr.namespace, container_id)
    _eventually(lambda: socket.exists() and str(socket))
    _eventually(lambda: mounts_under(containerd.bundle_dir(ctr.namespace, container_id)))


# --- bad input: a clear error from ctr ---------------------------------------------------------


@pytest.fixture(scope="module")
def plain_text_image(ctr: Ctr, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A wasm image whose entrypoint is an executable plain-text file (neither wasm, ELF nor `#!`)."""
    ref = "docker.io/wasmvisor-test/plain-text:latest"
    tar = tmp_path_factory.mktemp("core-images") / "plain-text.tar"
    build_oci_tar(tar, ref, {"/notes.txt": FileSpec.executable(b"just some notes\n")}, entrypoint=["/notes.txt"])
    ctr.import_image(tar)
    return ref


@pytest.mark.parametrize(
    ("image_name", "patterns"),
    [
        ("missing-module", [r"/missing\.wasm", r"not found|no such file|does not exist|missing"]),
        ("plain-text", [r"/notes\.txt", r"not a wasm file"]),
        ("malformed", [r"/broken\.wasm", r"invalid|malformed|failed|not a valid|error"]),
        ("imports-missing", [r"nope", r"import"]),
    ],
    ids=["missing-module", "plain-text-entrypoint", "malformed-wasm", "unknown-import"],
)
def test_bad_entrypoint_fails_with_a_message_naming_it(
    request: pytest.FixtureRequest, ctr: Ctr, image: ImageRef, container_id: str, image_name: str,
    patterns: list[str]
) -> None:
    # An ELF binary or a `#!` script entrypoint runs natively (tests/e2e/test_native.py); a file that
    # is neither, nor wasm, still gets the clear error.
    ref = request.getfixturevalue("plain_text_image") if image_name == "plain-text" else image(image_name)
    result = ctr.run_container(ref, container_id)

    assert result.returncode != 0
    message = result.stderr
    assert "ttrpc: closed" not in message, f"the shim died instead of answering: {message}"
    for pattern in patterns:
        assert re.search(pattern, message, re.IGNORECASE), f"{pattern!r} not in ctr's error: {message!r}"
    assert container_id not in ctr.containers()


def test_ctr_run_with_tty_is_refused_with_a_message_about_terminal(
    ctr: Ctr, image: ImageRef, container_id: str
) -> None:
    result = ctr.run_container_tty(image("hello"), container_id)

    assert result.returncode != 0
    assert "ttrpc: closed" not in result.stdout, f"the shim died instead of answering: {result.stdout}"
    assert "terminal" in result.stdout.lower(), result.stdout
    assert "hello from wasmvisor" not in result.stdout


# --- logs ----------------------------------------------------------------------------------------


def test_shim_log_lines_reach_containerd_log_with_instance_and_pod(
    containerd: PrivateContainerd, ctr: Ctr, image: ImageRef, container_id: str
) -> None:
    offset = containerd.log_size()

    result = ctr.run_container(image("hello"), container_id)

    assert result.returncode == 0, result.output
    instance = re.compile(r'\binstance="?' + re.escape(container_id) + r'"?(\s|$)')

    def missing() -> str:
        lines = [line for line in containerd.log_text(offset).splitlines() if instance.search(line)]
        if any("pod=" in line for line in lines):
            return ""
        return f"no line with instance={container_id} and pod= in {containerd.log_path}"

    _eventually(missing, timeout=5)
