"""`wasmvisor doctor` against a private containerd: all well when the shim is on containerd's PATH and the
runtime is in its config; a non-zero exit naming the fix when either is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.containerd import PrivateContainerd, private_containerd

CLI = Path(sys.executable).parent / "wasmvisor"
HANDLER = '[plugins."{plugin}".containerd.runtimes.{name}]\n  runtime_type = "{runtime}"\n'


def doctor(containerd: PrivateContainerd, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "doctor", "--address", containerd.address, *flags], capture_output=True,
                          text=True, timeout=60)


def cri_config(containerd: PrivateContainerd, path: Path, runtime: str) -> Path:
    """A config with the CRI plugin on and one handler `wasmvisor` of `runtime`, in the form of the line."""
    major = int(containerd.binaries.version().split(".", 1)[0])
    plugin = "io.containerd.cri.v1.runtime" if major >= 2 else "io.containerd.grpc.v1.cri"
    path.write_text(f"version = {3 if major >= 2 else 2}\n" + HANDLER.format(plugin=plugin, name="wasmvisor",
                                                                             runtime=runtime))
    return path


def test_doctor_on_the_configured_private_containerd_exits_0(containerd: PrivateContainerd, tmp_path: Path) -> None:
    as_started = doctor(containerd)
    with_handler = doctor(containerd, "--config", str(cri_config(containerd, tmp_path / "c.toml",
                                                                "io.containerd.wasmvisor.v1")),
                          "--handler", "wasmvisor")

    assert as_started.returncode == 0, as_started.stdout + as_started.stderr
    assert f"ok    config: {containerd.config_path}: the CRI plugin is disabled" in as_started.stdout
    assert "ok    shim: " in as_started.stdout and as_started.stdout.endswith("all is well\n")
    assert with_handler.returncode == 0, with_handler.stdout
    assert "CRI handler(s) wasmvisor -> io.containerd.wasmvisor.v1" in with_handler.stdout


def test_doctor_names_the_missing_handler_and_exits_1(containerd: PrivateContainerd, tmp_path: Path) -> None:
    done = doctor(containerd, "--config", str(cri_config(containerd, tmp_path / "c.toml", "io.containerd.runc.v2")),
                  "--handler", "wasmvisor")

    assert done.returncode == 1, done.stdout
    assert "FAIL  config: " in done.stdout and "CRI handler 'wasmvisor' is runtime_type 'io.containerd.runc.v2'" \
        in done.stdout
    assert 'fix: set [plugins."io.containerd.' in done.stdout and done.stdout.endswith("1 problem found\n")


def test_doctor_names_the_link_to_make_when_the_shim_is_not_on_containerds_path(
    containerd: PrivateContainerd,
) -> None:
    path = f"{containerd.binaries.bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"
    with private_containerd(binaries=containerd.binaries, extra_env={"PATH": path}) as bare:
        done = doctor(bare)

    assert done.returncode == 1, done.stdout
    assert f"FAIL  shim: containerd-shim-wasmvisor-v1 is not on containerd's PATH ({path})" in done.stdout
    assert f"fix: ln -sf {Path(sys.executable).parent}/containerd-shim-wasmvisor-v1 /usr/local/bin/" in done.stdout
