"""The example shims of examples/, built only on `import wasmvisor`, installed as a user would (pip, a
console script in a folder on containerd's PATH) and run through a real containerd under their own
runtime names: io.containerd.echo.v1 (an Engine) and io.containerd.sleeper.v1 (an Instance)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, shim_dir
from tests.e2e.ctr import Ctr

ImageRef = Callable[[str], str]
EXAMPLES = {"echo": REPO / "examples" / "echo_shim", "sleeper": REPO / "examples" / "sleeper_shim"}


@pytest.fixture(scope="module")
def example_shims() -> Iterator[Path]:
    """Both examples pip-installed into the running venv, whose scripts folder is on the private
    containerd's PATH (conftest.shim_dir); uninstalled afterwards."""
    scripts = Path(sysconfig.get_path("scripts"))
    if scripts != shim_dir():
        pytest.skip(f"the running venv's scripts ({scripts}) are not on the private containerd's PATH")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", *map(str, EXAMPLES.values())],
                   check=True, timeout=300, stdin=subprocess.DEVNULL)
    try:
        yield scripts
    finally:
        subprocess.run([*pip, "uninstall", "-y", "wasmvisor-echo-shim", "wasmvisor-sleeper-shim"],
                       timeout=120, stdin=subprocess.DEVNULL)


def test_echo_shim_prints_its_name_version_and_revision(example_shims: Path) -> None:
    done = subprocess.run([example_shims / "containerd-shim-echo-v1", "-v"], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "containerd-shim-echo-v1:"
    assert lines[1].startswith("  Version: ") and lines[2].startswith("  Revision: ")


def test_echo_engine_prints_its_context_and_exits_3(example_shims: Path, ctr: Ctr, image: ImageRef,
                                                    container_id: str) -> None:
    result = ctr.run_container(image("hello"), container_id, "/hello.wasm", "one", "two",
                               runtime="io.containerd.echo.v1", flags=["--env", "GREETING=hi"])

    assert result.returncode == 3, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "args: /hello.wasm one two"
    assert lines[1].startswith("env: ") and "GREETING=hi" in lines[1].split()
    assert lines[2] == "entrypoint: /hello.wasm"


def test_echo_engine_refuses_a_file_that_is_not_wasm(example_shims: Path, ctr: Ctr, image: ImageRef,
                                                     container_id: str) -> None:
    # A text file of the image (not executable, so not run as a native program) as the entrypoint.
    result = ctr.run_container(image("cat-file"), container_id, "/etc/greeting.txt", runtime="io.containerd.echo.v1")

    assert result.returncode != 0
    assert "module /etc/greeting.txt: not a wasm file (starts with 61206669)" in result.stderr, result.output


def test_sleeper_instance_prints_sleeps_and_exits_0(example_shims: Path, ctr: Ctr, image: ImageRef,
                                                    container_id: str) -> None:
    result = ctr.run_container(image("hello"), container_id, "sleeper", "0.1", runtime="io.containerd.sleeper.v1")

    assert (result.returncode, result.stdout) == (0, "sleeping 0.1 s\n"), result.output


@pytest.mark.parametrize(("signal_name", "status"), [("SIGTERM", 143), ("SIGKILL", 137)])
def test_sleeper_instance_killed_exits_128_plus_the_signal(example_shims: Path, ctr: Ctr, image: ImageRef,
                                                           container_id: str, signal_name: str, status: int) -> None:
    argv = ctr.run_args(image("hello"), container_id, "sleeper", "60", runtime="io.containerd.sleeper.v1")
    proc = ctr.popen(*argv)
    try:
        ctr.wait_for_task_status(container_id, "RUNNING", timeout=30)
        assert ctr.kill(container_id, signal_name).returncode == 0
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert (proc.returncode, stdout) == (status, "sleeping 60 s\n"), stderr
