"""Failures you can read (issue 12): the reason a container failed for reaches its termination log,
the host file bind-mounted at /dev/termination-log (as the kubelet mounts one), unless the container
wrote its own message there; a Create that fails says why in ctr's error and in that file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.ctr import Ctr
from wasmvisor.image import build_busybox_image, build_oci_tar

MIB = 1 << 20


@pytest.fixture(scope="module")
def failing_images(tmp_path_factory: pytest.TempPathFactory, guest_wasm: dict[str, Path], ctr: Ctr) -> dict[str, str]:
    out = tmp_path_factory.mktemp("termination-images")
    refs = {}
    for name in ("trap", "memtouch"):
        ref = f"docker.io/wasmvisor-test/termination-{name}:latest"
        build_oci_tar(out / f"{name}.tar", ref, {f"/{name}.wasm": guest_wasm[name].read_bytes()},
                      entrypoint=[f"/{name}.wasm"])
        refs[name] = ref
    refs["missing"] = "docker.io/wasmvisor-test/termination-missing:latest"
    build_oci_tar(out / "missing.tar", refs["missing"], {"/hello.wasm": guest_wasm["hello"].read_bytes()},
                  entrypoint=["/missing.wasm"])
    refs["busybox"] = "docker.io/wasmvisor-test/termination-busybox:latest"
    build_busybox_image(out / "busybox.tar", refs["busybox"], applets=("sh", "echo"))
    for name in refs:
        ctr.import_image(out / f"{name}.tar")
    return refs


@pytest.fixture
def termination_log(tmp_path: Path) -> Path:
    log = tmp_path / "termination-log"
    log.write_bytes(b"")
    return log


def mount_at_termination_log(log: Path) -> list[str]:
    return ["--mount", f"type=bind,src={log},dst=/dev/termination-log,options=rbind:rw"]


def test_a_trapping_guest_leaves_the_trap_in_its_termination_log(
        ctr: Ctr, failing_images: dict[str, str], container_id: str, termination_log: Path) -> None:
    result = ctr.run_container(failing_images["trap"], container_id, flags=mount_at_termination_log(termination_log))

    assert result.returncode == 137, result.output
    text = termination_log.read_text()
    assert text.startswith("guest /trap.wasm trapped: ") and "unreachable" in text, text
    assert text.count("\n") == 1


def test_an_oom_killed_guest_says_oomkilled_in_its_termination_log(
        ctr: Ctr, failing_images: dict[str, str], container_id: str, termination_log: Path) -> None:
    flags = [*mount_at_termination_log(termination_log), "--memory-limit", str(64 * MIB)]
    result = ctr.run_container(failing_images["memtouch"], container_id, flags=flags, timeout=60)

    assert result.returncode == 137, result.output
    assert termination_log.read_text().startswith(
        f"OOMKilled: the container reached its memory limit of {64 * MIB} bytes")


def test_a_create_that_fails_says_why_in_ctrs_error_and_in_the_termination_log(
        ctr: Ctr, failing_images: dict[str, str], container_id: str, termination_log: Path) -> None:
    result = ctr.run_container(failing_images["missing"], container_id, flags=mount_at_termination_log(termination_log))

    assert result.returncode != 0
    assert "/missing.wasm" in result.stderr, result.stderr
    text = termination_log.read_text()
    assert text.startswith("create failed: ") and "/missing.wasm" in text, text


def test_a_message_the_container_wrote_itself_is_kept(
        ctr: Ctr, failing_images: dict[str, str], new_container_id: Callable[[str], str],
        termination_log: Path) -> None:
    result = ctr.run_container(failing_images["busybox"], new_container_id("own"), "sh", "-c",
                               "echo my own reason > /dev/termination-log; exit 2",
                               flags=mount_at_termination_log(termination_log))

    assert result.returncode == 2, result.output
    assert termination_log.read_text() == "my own reason\n"


def test_a_plain_exit_writes_nothing(ctr: Ctr, failing_images: dict[str, str], container_id: str,
                                     termination_log: Path) -> None:
    result = ctr.run_container(failing_images["busybox"], container_id, "sh", "-c", "exit 3",
                               flags=mount_at_termination_log(termination_log))

    assert result.returncode == 3, result.output
    assert termination_log.read_bytes() == b""
