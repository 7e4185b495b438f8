"""Least privilege by choice: annotations on a container give its wasm guest only the folders it names,
a read-only root, a wall-clock limit and a fuel limit, and tune wasmtime (engines/workload.py).

The probe is tests/guests/fs_probe.c (one line per action); the limits use sleep.wat (sleeps forever)
and counter.c (counts forever).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr
from wasmvisor.image import build_oci_tar

PROBE = "docker.io/wasmvisor-test/workload-probe:latest"
COUNTER = "docker.io/wasmvisor-test/workload-counter:latest"
SIMD = "docker.io/wasmvisor-test/workload-simd:latest"


@pytest.fixture(scope="module")
def probe_image(ctr: Ctr, guest_wasm: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("workload-image") / "probe.tar"
    files: dict[str, bytes] = {
        "/fs_probe.wasm": guest_wasm["fs_probe"].read_bytes(),
        "/data/in.txt": b"input\n",
        "/srv/out/.keep": b"",
        "/etc/secret.txt": b"not for the guest\n",
    }
    build_oci_tar(out, PROBE, files, entrypoint=["/fs_probe.wasm"])
    ctr.import_image(out)
    counter = out.with_name("counter.tar")
    build_oci_tar(counter, COUNTER, {"/counter.wasm": guest_wasm["counter"].read_bytes()}, entrypoint=["/counter.wasm"])
    ctr.import_image(counter)
    simd = out.with_name("simd.tar")
    build_oci_tar(simd, SIMD, {"/simd.wasm": guest_wasm["simd"].read_bytes()}, entrypoint=["/simd.wasm"])
    ctr.import_image(simd)
    return PROBE


def annotations(**values: str) -> list[str]:
    flags = []
    for key, value in values.items():
        flags += ["--annotation", f"wasmvisor.io/{key.replace('_', '-')}={value}"]
    return flags


def lines(stdout: str) -> dict[str, str]:
    return {key: value for key, _, value in (line.partition(": ") for line in stdout.splitlines())}


def log_lines_about(containerd: PrivateContainerd, offset: int, container_id: str, text: str) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        found = [ln for ln in containerd.log_text(offset).splitlines() if container_id in ln and text in ln]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_preopens_give_the_guest_only_the_folders_named_and_read_only_where_asked(
        ctr: Ctr, probe_image: str, container_id: str) -> None:
    result = ctr.run_container(
        probe_image, container_id, "/fs_probe.wasm", "cat:/in/in.txt", "write:/in/new.txt", "write:/out/new.txt",
        "cat:/etc/secret.txt", "ls:/", flags=annotations(preopens="/data:/in:ro,/srv/out:/out:rw"))
    assert result.returncode == 0, result.output
    seen = lines(result.stdout)
    assert seen["cat /in/in.txt"] == "input|"
    assert seen["write /in/new.txt"].startswith("error"), seen
    assert seen["write /out/new.txt"] == "ok"
    assert seen["cat /etc/secret.txt"].startswith("error"), "the root is not preopened"
    assert seen["ls /"].startswith("error"), seen


def test_a_read_only_root_can_be_read_but_not_written(ctr: Ctr, probe_image: str, container_id: str) -> None:
    result = ctr.run_container(probe_image, container_id, "/fs_probe.wasm", "cat:/data/in.txt", "write:/data/x.txt",
                               flags=annotations(readonly_root="true"))
    assert result.returncode == 0, result.output
    seen = lines(result.stdout)
    assert seen["cat /data/in.txt"] == "input|"
    assert seen["write /data/x.txt"].startswith("error"), seen


def test_a_preopen_that_is_no_folder_fails_ctr_run_naming_the_annotation(
        ctr: Ctr, probe_image: str, container_id: str) -> None:
    result = ctr.run_container(probe_image, container_id, flags=annotations(preopens="/nowhere:/x"))
    assert result.returncode != 0
    assert "annotation wasmvisor.io/preopens: /nowhere is not a folder of the container" in result.stderr, result.output


def test_a_bad_value_fails_ctr_run_naming_the_annotation(ctr: Ctr, probe_image: str, container_id: str) -> None:
    result = ctr.run_container(probe_image, container_id, flags=annotations(time_limit="soon"))
    assert result.returncode != 0
    assert "annotation wasmvisor.io/time-limit: 'soon' is not a duration" in result.stderr, result.output


def test_a_guest_past_its_time_limit_ends_with_137_and_the_reason_in_the_log_and_termination_message(
        containerd: PrivateContainerd, ctr: Ctr, image: Callable[[str], str], container_id: str, tmp_path: Path
) -> None:
    offset = containerd.log_size()
    message = tmp_path / "termination-log"
    message.write_text("")
    mount = ["--mount", f"type=bind,src={message},dst=/dev/termination-log,options=rbind:rw"]
    result = ctr.run_container(image("sleep"), container_id, flags=[*annotations(time_limit="1s"), *mount])
    assert (result.returncode, result.stdout) == (137, "sleeping\n"), result.output
    reason = "guest /sleep.wasm: time limit of 1s passed (epoch interruption): ended with 137"
    assert log_lines_about(containerd, offset, container_id, reason)
    assert message.read_text() == reason + "\n", "the kubelet's termination message"


def test_a_guest_waiting_in_a_host_call_past_its_time_limit_ends_with_137_and_the_reason_in_the_log(
        containerd: PrivateContainerd, ctr: Ctr, image: Callable[[str], str], container_id: str) -> None:
    offset = containerd.log_size()
    argv = ctr.run_args(image("stdin"), container_id, flags=annotations(time_limit="1s"))
    proc = ctr.popen(*argv, stdin=subprocess.PIPE)  # open and silent: the guest's read never returns
    try:
        assert proc.wait(timeout=30) == 137
    finally:
        proc.kill()
        proc.wait()
    assert log_lines_about(containerd, offset, container_id, "time limit of 1s passed while it waited in a host call")


def test_a_guest_out_of_fuel_ends_with_137_and_the_reason_in_the_log(
        containerd: PrivateContainerd, ctr: Ctr, probe_image: str, container_id: str) -> None:
    offset = containerd.log_size()
    result = ctr.run_container(COUNTER, container_id, flags=annotations(fuel="200000"))
    assert result.returncode == 137, result.output
    assert result.stdout.startswith("0\n1\n"), result.output
    assert log_lines_about(containerd, offset, container_id, "out of fuel (200000 units)")


def test_wasmtime_settings_apply_to_the_workload_and_key_its_compiled_code(
        ctr: Ctr, probe_image: str, new_container_id: Callable[[str], str]) -> None:
    first = ctr.run_container(SIMD, new_container_id("default"))
    assert first.returncode == 0, first.output  # compiled and cached with the node's settings
    refused = ctr.run_container(SIMD, new_container_id("nosimd"), flags=annotations(**{"wasmtime.simd": "false"}))
    assert refused.returncode != 0
    assert "module /simd.wasm: invalid wasm:" in refused.stderr, refused.output
    assert "SIMD support is not enabled" in refused.stderr, refused.output
    tuned = ctr.run_container(SIMD, new_container_id("tuned"), flags=annotations(**{"wasmtime.opt-level": "none"}))
    assert tuned.returncode == 0, tuned.output
