"""A wasm guest stays inside wasm: it cannot reach the worker that runs it through /proc, /sys, device
nodes or raw fd numbers (issue 15: a guest once wrote into its worker's code through /proc/self/mem).

The guest is tests/guests/escape.c: each attempt prints `NAME: blocked (why)` or `NAME: ESCAPED (what)`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.ctr import Ctr
from tests.e2e.host import processes_titled
from wasmvisor.image import build_oci_tar

ESCAPE = "docker.io/wasmvisor-test/escape:latest"
ATTEMPTS = ["mem", "maps", *(f"fd{n}" for n in range(16)), "root1", "sys", "uevent",
            "devmem", "devkmem", "devport", "devkmsg", "devsda", "rawfd"]


@pytest.fixture(scope="module")
def escape_image(ctr: Ctr, guest_wasm: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("escape-image") / "escape.tar"
    build_oci_tar(out, ESCAPE, {"/escape.wasm": guest_wasm["escape"].read_bytes()}, entrypoint=["/escape.wasm"])
    ctr.import_image(out)
    return ESCAPE


def attempts(stdout: str) -> dict[str, str]:
    """The guest's lines by attempt name (`mem` -> `blocked (open /proc/self/mem rw: ...)`)."""
    return {name: rest for name, _, rest in (line.partition(": ") for line in stdout.splitlines())}


def test_guest_cannot_write_its_workers_code_nor_reach_proc_sys_devices_or_raw_fds(
        ctr: Ctr, escape_image: str, container_id: str) -> None:
    result = ctr.run_container(escape_image, container_id)
    seen = attempts(result.stdout)
    assert list(seen) == ATTEMPTS, result.output
    escaped = {name: line for name, line in seen.items() if not line.startswith("blocked")}
    assert escaped == {}, result.output
    assert result.returncode == 0, result.output


def status_fields(pid: int, tid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def test_running_guest_has_no_capability_no_new_privs_a_filter_on_every_thread_and_only_its_fds(
        ctr: Ctr, image: Callable[[str], str], container_id: str) -> None:
    run = ctr.start_container(image("sleep"), container_id)
    try:
        run.wait_for_stdout("sleeping\n", timeout=20)
        workers = processes_titled(f"wasmvisor-worker {ctr.namespace}/{container_id}")
        assert len(workers) == 1, workers
        worker = workers[0]
        threads = sorted(int(tid) for tid in os.listdir(f"/proc/{worker}/task"))
        for fields in (status_fields(worker, tid) for tid in threads):  # per thread, as the kernel keeps them
            caps = {key: fields[key] for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
            assert caps == dict.fromkeys(caps, "0000000000000000"), (fields["Name"], caps)
            assert (fields["NoNewPrivs"], fields["Seccomp"]) == ("1", "2"), fields["Name"]
        fds = {int(fd): os.readlink(f"/proc/{worker}/fd/{fd}") for fd in os.listdir(f"/proc/{worker}/fd")}
        # Beyond the stdio: the pipe to the supervisor, the guest's root preopen, the module's mapped
        # code (read-only) and wasmtime's WASI runtime (epoll, eventfd). No log FIFO, nothing else.
        others = [target for fd, target in fds.items() if fd > 2]
        assert sum(target.startswith("socket:") for target in others) == 1, fds
        assert all(target.startswith(("socket:", "anon_inode:[event")) or target == "/" or target.endswith(".cwasm")
                   for target in others), fds
        for fd, target in fds.items():
            if target.endswith(".cwasm"):
                flags = Path(f"/proc/{worker}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0]
                assert int(flags, 8) & os.O_ACCMODE == os.O_RDONLY, (target, flags)
        ctr.kill(container_id, "SIGKILL")
        assert run.wait(timeout=20).returncode == 137
    finally:
        run.kill()


def test_a_worker_that_compiled_its_module_keeps_no_thread_with_capabilities(
        ctr: Ctr, guest_wasm: dict[str, Path], tmp_path: Path, container_id: str) -> None:
    # A custom section makes a module no cache holds: this worker compiles it (wasmtime's compiler
    # leaves idle threads behind, which would keep the capabilities they had then).
    name = secrets.token_hex(4).encode()
    wasm = guest_wasm["sleep"].read_bytes() + bytes([0, len(name) + 2, len(name)]) + name + b"!"
    ref = f"docker.io/wasmvisor-test/cold-sleep-{name.decode()}:latest"
    build_oci_tar(tmp_path / "cold.tar", ref, {"/sleep.wasm": wasm}, entrypoint=["/sleep.wasm"])
    ctr.import_image(tmp_path / "cold.tar")
    run = ctr.start_container(ref, container_id)
    try:
        run.wait_for_stdout("sleeping\n", timeout=20)
        (worker,) = processes_titled(f"wasmvisor-worker {ctr.namespace}/{container_id}")
        threads = sorted(int(tid) for tid in os.listdir(f"/proc/{worker}/task"))
        held = {fields["Name"]: fields["CapBnd"] for fields in (status_fields(worker, tid) for tid in threads)
                if int(fields["CapBnd"], 16) or int(fields["CapPrm"], 16)}
        assert held == {}, held
        ctr.kill(container_id, "SIGKILL")
        assert run.wait(timeout=20).returncode == 137
    finally:
        run.kill()
