"""`ctr task exec` into running containers (issue 12, exec): a native busybox container (output, exit
code, 128+N on a signal, its pid namespace), a wasm module exec'd into a running wasm container, a
non-wasm exec refused with a message that names it, and the lifetimes: an exec's exit leaves its
container running, the container's kill ends a running exec."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.ctr import Ctr
from wasmvisor.image import build_busybox_image, build_oci_tar

APPLETS = ("sh", "sleep", "cat", "echo", "kill", "ls", "tty", "stty", "true")


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
