"""`ctr task exec` into running containers (issue 12, exec): a native busybox container (output, exit
code, 128+N on a signal, its pid namespace), a wasm module exec'd into a running wasm container, a
non-wasm exec refused with a message that names it, a wasm exec confined as its container's guest
(no capability, no_new_privs, the filter on every thread, no /proc), and the lifetimes: an exec's exit leaves its
container running, the container's kill ends a running exec."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.ctr import Ctr
from tests.e2e.host import processes_titled
from tests.e2e.terminal import TerminalSession
from wasmvisor.image import build_busybox_image, build_oci_tar

APPLETS = ("sh", "sleep", "cat", "echo", "kill", "ls", "tty", "stty", "true", "id", "pwd")


@pytest.fixture(scope="module")
def exec_images(tmp_path_factory: pytest.TempPathFactory, guest_wasm: dict[str, Path], ctr: Ctr) -> dict[str, str]:
    out = tmp_path_factory.mktemp("exec-images")
    busybox, wasm = "docker.io/wasmvisor-test/exec-busybox:latest", "docker.io/wasmvisor-test/exec-wasm:latest"
    build_busybox_image(out / "busybox.tar", busybox, applets=APPLETS)
    files: dict[str, bytes] = {f"/{name}.wasm": guest_wasm[name].read_bytes() for name in ("sleep", "hello", "exit42")}
    build_oci_tar(out / "wasm.tar", wasm, files, entrypoint=["/sleep.wasm"])  # type: ignore[arg-type]
    ctr.import_image(out / "busybox.tar")
    ctr.import_image(out / "wasm.tar")
    return {"busybox": busybox, "wasm": wasm}


@pytest.fixture
def running(ctr: Ctr, exec_images: dict[str, str], new_container_id: Callable[[str], str]) -> Iterator[
        Callable[[str, tuple[str, ...]], str]]:
    """running(image, args) -> the id of a detached container of that image, running."""
    started: list[str] = []

    def run(name: str, args: tuple[str, ...] = ()) -> str:
        cid = new_container_id(name)
        argv = ctr.run_args(exec_images[name], cid, *args, rm=False, flags=["-d"])
        ctr.run(*argv, check=True)
        started.append(cid)
        ctr.wait_for_task_status(cid, "RUNNING")
        return cid

    yield run
    for cid in started:
        ctr.remove(cid)


def exec_in(ctr: Ctr, cid: str, exec_id: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return ctr.run("task", "exec", "--exec-id", exec_id, cid, *args, timeout=timeout)


def test_exec_into_native_container_prints_and_returns_its_exit_code(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("busybox", ("sleep", "1000"))

    result = exec_in(ctr, cid, "e1", "sh", "-c", "echo hi from exec; echo oops >&2; exit 3")

    assert (result.returncode, result.stdout, result.stderr) == (3, "hi from exec\n", "oops\n")


def test_exec_runs_as_the_user_and_in_the_folder_it_asks_for(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("busybox", ("sleep", "1000"))

    result = ctr.run("task", "exec", "--exec-id", "e1", "--user", "1000", "--cwd", "/bin", cid,
                     "sh", "-c", "id -u; pwd; cat /proc/self/status", timeout=30)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["1000", "/bin"]
    assert "CapEff:\t0000000000000000" in lines  # as after runc's exec: a non-root user keeps none


def test_exec_killed_by_a_signal_exits_128_plus_n(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("busybox", ("sleep", "1000"))

    result = exec_in(ctr, cid, "e1", "sh", "-c", "kill -USR1 $$; sleep 5")

    assert result.returncode == 128 + 10, result.stderr


def test_exec_sees_the_containers_pid_namespace_and_leaves_it_running(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("busybox", ("sleep", "1000"))

    first = exec_in(ctr, cid, "e1", "cat", "/proc/1/cmdline")
    second = exec_in(ctr, cid, "e2", "sh", "-c", "echo $$")

    assert (first.returncode, first.stdout) == (0, "sleep\x001000\x00"), first.stderr
    assert second.returncode == 0 and 1 < int(second.stdout) < 100, second
    assert ctr.tasks()[cid].status == "RUNNING"


def test_exec_ids_are_unique_per_task(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("busybox", ("sleep", "1000"))
    with ctr.events() as recorder:
        first = ctr.popen("task", "exec", "--exec-id", "same", cid, "sleep", "1000")
        try:
            recorder.wait_for("/tasks/exec-started", cid, timeout=20)
            second = exec_in(ctr, cid, "same", "true")
        finally:
            ctr.run("task", "kill", "-s", "SIGKILL", "--exec-id", "same", cid, timeout=30)
            first.wait(timeout=30)

    assert second.returncode != 0 and "already exists" in second.stderr, second


def test_killing_the_container_ends_its_running_exec(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("busybox", ("sleep", "1000"))
    with ctr.events() as recorder:
        long = ctr.popen("task", "exec", "--exec-id", "long", cid, "sleep", "1000")
        recorder.wait_for("/tasks/exec-started", cid, timeout=20)
        ctr.kill(cid, "SIGKILL")
        code = long.wait(timeout=30)

    assert code == 137


def test_exec_of_a_wasm_module_into_a_running_wasm_container(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("wasm")

    hello = exec_in(ctr, cid, "e1", "/hello.wasm")
    exit42 = exec_in(ctr, cid, "e2", "/exit42.wasm")

    assert (hello.returncode, hello.stdout) == (0, "hello from wasmvisor\n"), hello.stderr
    assert exit42.returncode == 42, exit42.stderr
    assert ctr.tasks()[cid].status == "RUNNING"


def test_exec_of_a_shell_into_a_wasm_container_is_refused_by_name(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("wasm")

    result = exec_in(ctr, cid, "e1", "/bin/sh")

    assert result.returncode != 0
    assert f"exec /bin/sh in wasm container {cid}: not a wasm module" in result.stderr, result.stderr
    assert ctr.tasks()[cid].status == "RUNNING"


WAIT_FOR_SIZE = 'while :; do case "$(stty size 2>/dev/null)" in [1-9]*) break;; esac; sleep 0.1; done'
"""Until the terminal has a size (ctr sends it right after Start; busybox's `stty size` of a 0x0
terminal complains but exits 0)."""


def on_terminal(ctr: Ctr, *args: str, cols: int = 101, rows: int = 33) -> TerminalSession:
    return TerminalSession([*ctr.prefix, *args], ctr.containerd.environment(), cols=cols, rows=rows)


def test_ctr_run_tty_gives_a_native_container_a_terminal_of_ctrs_size(
        ctr: Ctr, exec_images: dict[str, str], container_id: str) -> None:
    # ctr sends its window size (ResizePty) only after Start: the shell waits for it.
    script = f"{WAIT_FOR_SIZE}; stty size; [ -t 0 ] && echo stdin is a tty"
    argv = ctr.run_args(exec_images["busybox"], container_id, "sh", "-c", script, flags=["--tty"])
    session = on_terminal(ctr, *argv)

    code = session.wait()

    assert code == 0, session.text
    assert "33 101\nstdin is a tty\n" in session.text


def test_ctr_task_exec_tty_gets_a_terminal_and_follows_a_resize(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("busybox", ("sleep", "1000"))
    session = on_terminal(ctr, "task", "exec", "--tty", "--exec-id", "t1", cid,
                          "sh", "-c", f"{WAIT_FOR_SIZE}; tty; stty size; read line; "
                          'while [ "$(stty size)" = "33 101" ]; do sleep 0.1; done; stty size; exit 4')
    session.read_until("33 101\n")

    session.type("go on\n")
    session.resize(120, 40)
    for _ in range(20):  # ctr listens for SIGWINCH only after its first ResizePty: say it again if need be
        try:
            session.read_until("40 120\n", timeout=1)
            break
        except AssertionError:
            session.resize(120, 40)
    code = session.wait()

    assert code == 4, session.text
    assert "/dev/pts/0\n" in session.text.split("33 101\n", 1)[0]  # in the container's own devpts
    assert "40 120\n" in session.text.split("33 101\n", 1)[1]


def test_ctr_run_tty_of_a_wasm_guest_is_refused_by_name(
        ctr: Ctr, exec_images: dict[str, str], container_id: str) -> None:
    argv = ctr.run_args(exec_images["wasm"], container_id, flags=["--tty"])
    session = on_terminal(ctr, *argv)

    code = session.wait()

    assert code != 0
    assert "terminal=true: /sleep.wasm is a wasm module, and a wasm guest cannot have a tty" in session.text


def test_a_wasm_exec_is_confined_as_its_containers_guest(ctr: Ctr, running: Callable[..., str]) -> None:
    cid = running("wasm")
    proc = ctr.popen("task", "exec", "--exec-id", "e1", cid, "/sleep.wasm")
    try:
        title = f"wasmvisor-exec {ctr.namespace}/{cid}/e1"
        deadline = time.monotonic() + 20
        while True:  # the guest's process (in the pid namespace; its relay is titled wasmvisor-init)
            pids = [pid for pid in processes_titled(title) if _status(pid).get("Seccomp") == "2"]
            if pids or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(pids) == 1, processes_titled(title)
        pid = pids[0]
        for tid in os.listdir(f"/proc/{pid}/task"):  # per thread, as the kernel keeps them
            fields = _status(pid, int(tid))
            caps = {key: fields[key] for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
            assert caps == dict.fromkeys(caps, "0000000000000000"), (fields["Name"], caps)
            assert (fields["NoNewPrivs"], fields["Seccomp"]) == ("1", "2"), fields["Name"]
        assert not os.path.exists(f"/proc/{pid}/root/proc/self"), "the container's /proc is hidden from it"
    finally:
        proc.kill()
        proc.wait()


def _status(pid: int, tid: int | None = None) -> dict[str, str]:
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}
