"""WASI 0.2 command components through `ctr run --runtime io.containerd.wasmvisor.v1`: the test guests'
core modules wrapped into components by jco (tests/guests/components.py), run by wasmtime-py's component
API in the worker.

WASI 0.2's exit carries ok/err only: a component's exit(42) is 1, as the wasmtime CLI reports it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest
import wasmtime

from tests.e2e.conftest import REPO
from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr
from tests.guests.components import build_component, build_python_component
from wasmvisor.image import build_oci_tar

MIB = 1 << 20
GUESTS = ("hello", "exit42", "trap", "sleep", "memgrow", "echo_args_env", "cat_file", "stdin_to_stdout", "greet")

KEYVALUE = """(component
  (import "wasi:keyvalue/store@0.2.0-draft" (instance (export "get" (func (param "k" string)))))
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (type $r (result))
  (func $run (result $r) (canon lift (core func $i "run")))
  (instance $cli (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli)))"""


@pytest.fixture(scope="module")
def component_image(ctr: Ctr, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """component_image(name) -> ref of a one-file image whose entrypoint `/NAME.wasm` is a component."""
    cache = REPO / "_work" / "guests"
    out = tmp_path_factory.mktemp("component-images")
    wasm = {name: build_component(name, cache).read_bytes() for name in GUESTS}
    wasm["keyvalue"] = bytes(wasmtime.wat2wasm(KEYVALUE))

    def use(name: str) -> str:
        ref = f"docker.io/wasmvisor-test/component-{name.replace('_', '-')}:latest"
        tar = out / f"{name}.tar"
        if not tar.exists():
            files = {f"/{name}.wasm": wasm[name], "/etc/greeting.txt": b"a file from the image\n"}
            build_oci_tar(tar, ref, files, entrypoint=[f"/{name}.wasm"])
        ctr.import_image(tar)
        return ref

    yield use


def test_component_prints_hello_and_exits_0(ctr: Ctr, component_image: Callable[[str], str],
                                            container_id: str) -> None:
    result = ctr.run_container(component_image("hello"), container_id)

    assert (result.returncode, result.stdout, result.stderr) == (0, "hello from wasmvisor\n", ""), result.output


def test_component_gets_args_and_env(ctr: Ctr, component_image: Callable[[str], str], container_id: str) -> None:
    result = ctr.run_container(component_image("echo_args_env"), container_id, "/echo_args_env.wasm", "one",
                               "two words", flags=["--env", "WV_FLAG=yes"])

    assert result.returncode == 0, result.output
    assert result.stdout.splitlines()[:3] == ["argv[0]=/echo_args_env.wasm", "argv[1]=one", "argv[2]=two words"]
    assert "env WV_FLAG=yes" in result.stdout.splitlines()


def test_component_reads_a_file_from_the_image(ctr: Ctr, component_image: Callable[[str], str],
                                               container_id: str) -> None:
    result = ctr.run_container(component_image("cat_file"), container_id, "/cat_file.wasm", "/etc/greeting.txt")

    assert (result.returncode, result.stdout) == (0, "a file from the image\n"), result.stderr


def test_component_reads_stdin(ctr: Ctr, component_image: Callable[[str], str], container_id: str) -> None:
    text = "line one\nline two\n"

    result = ctr.run_container(component_image("stdin_to_stdout"), container_id, input=text)

    assert (result.returncode, result.stdout) == (0, text), result.stderr


def test_component_exit_with_a_code_is_1_and_a_trap_is_137(
    ctr: Ctr, component_image: Callable[[str], str], new_container_id: Callable[[str], str]
) -> None:
    exited = ctr.run_container(component_image("exit42"), new_container_id("exit"))
    trapped = ctr.run_container(component_image("trap"), new_container_id("trap"))

    assert (exited.returncode, trapped.returncode) == (1, 137), (exited.output, trapped.output)


def test_component_hash_name_calls_that_export(ctr: Ctr, component_image: Callable[[str], str],
                                               container_id: str) -> None:
    result = ctr.run_container(component_image("greet"), container_id, "/greet.wasm#greet")

    assert (result.returncode, result.stdout) == (0, "greet called\n"), result.output


def test_component_memory_is_held_to_the_memory_limit(ctr: Ctr, component_image: Callable[[str], str],
                                                      container_id: str) -> None:
    result = ctr.run_container(component_image("memgrow"), container_id, flags=["--memory-limit", str(64 * MIB)])

    assert (result.returncode, result.stdout) == (0, "small grow: ok\nbig grow: -1\n"), result.output


@pytest.mark.parametrize(("signal", "code"), [("SIGTERM", 143), ("SIGKILL", 137)])
def test_signal_ends_a_sleeping_component(ctr: Ctr, component_image: Callable[[str], str], container_id: str,
                                          signal: str, code: int) -> None:
    run = ctr.start_container(component_image("sleep"), container_id)
    try:
        run.wait_for_stdout("sleeping\n", timeout=20)
        assert ctr.kill(container_id, signal).returncode == 0
        assert run.wait(timeout=20).returncode == code
    finally:
        run.kill()


def test_component_with_an_unknown_import_fails_create_naming_it(
    ctr: Ctr, component_image: Callable[[str], str], container_id: str
) -> None:
    result = ctr.run_container(component_image("keyvalue"), container_id)

    assert result.returncode != 0
    assert "ttrpc: closed" not in result.stderr
    assert re.search(r"component /keyvalue\.wasm: unknown import wasi:keyvalue/store@0\.2\.0-draft", result.stderr), (
        result.stderr)
    assert container_id not in ctr.containers()


def test_the_log_says_which_engine_ran_the_component(containerd: PrivateContainerd, ctr: Ctr,
                                                     component_image: Callable[[str], str], container_id: str) -> None:
    offset = containerd.log_size()

    result = ctr.run_container(component_image("hello"), container_id)

    assert result.returncode == 0, result.output
    said = re.compile(r"/hello\.wasm is a WASI 0\.2 component: running it with wasmtime-py.*instance=\"?"
                      + re.escape(container_id))
    deadline = time.monotonic() + 5
    while not said.search(containerd.log_text(offset)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert said.search(containerd.log_text(offset)), containerd.log_text(offset)[-3000:]


def python_component_image(ctr: Ctr, tmp_path_factory: pytest.TempPathFactory, name: str, world: str) -> str:
    """The ref of an imported one-file image whose entrypoint `/NAME.wasm` is the componentize-py
    component of tests/guests/NAME/app.py for `world`."""
    wasm = build_python_component(name, world, REPO / "_work" / "guests")
    ref = f"docker.io/wasmvisor-test/{name.replace('_', '-')}:latest"
    tar = tmp_path_factory.mktemp(name) / "image.tar"
    build_oci_tar(tar, ref, {f"/{name}.wasm": wasm.read_bytes()}, entrypoint=[f"/{name}.wasm"])
    ctr.import_image(tar)
    return ref


@pytest.fixture(scope="module")
def p3_image(ctr: Ctr, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A WASI 0.3 command component (componentize-py, wasi:cli/command@0.3.0; tests/guests/p3_hello)."""
    return python_component_image(ctr, tmp_path_factory, "p3_hello", "wasi:cli/command@0.3.0")


def test_wasi_0_3_command_runs_with_its_args_env_and_exit_code(containerd: PrivateContainerd, ctr: Ctr,
                                                               p3_image: str, container_id: str) -> None:
    offset = containerd.log_size()

    result = ctr.run_container(p3_image, container_id, "/p3_hello.wasm", "7", flags=["--env", "WV=yes"],
                               timeout=300)

    assert (result.returncode, result.stdout) == (7, "hello from WASI 0.3: args=['7'] WV=yes\n"), result.output
    assert re.search(r"engine wasmtime CLI .*/p3_hello\.wasm is a WASI 0\.3 command", containerd.log_text(offset))


def test_wasi_0_3_command_memory_is_held_to_the_memory_limit(ctr: Ctr, p3_image: str,
                                                             new_container_id: Callable[[str], str]) -> None:
    limited = ctr.run_container(p3_image, new_container_id("limited"), "/p3_hello.wasm", "grow",
                                flags=["--memory-limit", str(256 * MIB)], timeout=300)
    free = ctr.run_container(p3_image, new_container_id("free"), "/p3_hello.wasm", "grow", timeout=300)

    assert (limited.returncode, limited.stdout.splitlines()[-1:]) == (0, ["no memory for 400 MiB"]), limited.output
    assert (free.returncode, free.stdout.splitlines()[-1:]) == (0, ["grew 400 MiB"]), free.output
