"""The `wasmvisor` command: `image build` (both image forms), `ps`, and one line on stderr for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from wasmvisor.cli import main

CLEAR = "\x1b[H\x1b[2J"
"""What `ps --watch` writes before each redraw."""

MODULE = b"\0asm\x01\0\0\0"


def layout(tar: Path) -> dict[str, object]:
    with tarfile.open(tar) as t:
        def blob(digest: str) -> bytes:
            f = t.extractfile(f"blobs/sha256/{digest.partition(':')[2]}")
            assert f is not None
            return f.read()

        index_file = t.extractfile("index.json")
        assert index_file is not None
        index = json.loads(index_file.read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        return {"index": index, "manifest": manifest, "config": config,
                "layer0": blob(manifest["layers"][0]["digest"])}


def test_wasm_layer_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "app.wasm").write_bytes(MODULE)
    out = tmp_path / "app.tar"
    assert main(["image", "build", "--wasm", str(tmp_path / "app.wasm"), "--name", "docker.io/x/app:1",
                 "--layout", "wasm-layer", "-o", str(out)]) == 0
    got = layout(out)
    assert got["config"]["architecture"] == "wasm" and got["config"]["os"] == "wasip1"  # type: ignore[index]
    assert got["config"]["config"]["Entrypoint"] == ["/app.wasm"]  # type: ignore[index]
    assert [x["mediaType"] for x in got["manifest"]["layers"]] == ["application/wasm"]  # type: ignore[index]
    assert got["layer0"] == MODULE
    assert "docker.io/x/app:1" in capsys.readouterr().out


def test_rootfs_form(tmp_path: Path) -> None:
    (tmp_path / "app.wasm").write_bytes(MODULE)
    out = tmp_path / "app.tar"
    assert main(["image", "build", "--wasm", str(tmp_path / "app.wasm"), "--name", "x/app:1", "-o", str(out)]) == 0
    got = layout(out)
    assert [x["mediaType"] for x in got["manifest"]["layers"]] == [  # type: ignore[index]
        "application/vnd.oci.image.layer.v1.tar"]
    assert got["config"]["config"]["Entrypoint"] == ["/app.wasm"]  # type: ignore[index]


@pytest.mark.parametrize(("content", "message"), [
    (None, "No such file or directory"),
    (b"\x7fELF\x02\x01", "not a wasm module (starts with 7f454c46)"),
    (b"", "not a wasm module (starts with nothing: the file is empty)"),
])
def test_bad_input_is_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    wasm = tmp_path / "app.wasm"
    if content is not None:
        wasm.write_bytes(content)
    assert main(["image", "build", "--wasm", str(wasm), "--name", "x/app:1", "-o", str(tmp_path / "o.tar")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("wasmvisor: ")
    assert not (tmp_path / "o.tar").exists()


def test_import_without_ctr_on_path_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "app.wasm").write_bytes(MODULE)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["image", "build", "--wasm", str(tmp_path / "app.wasm"), "--name", "x/app:1",
                 "-o", str(tmp_path / "o.tar"), "--import"]) == 1
    assert capsys.readouterr().err == "wasmvisor: --import: ctr not found on PATH\n"


@pytest.mark.parametrize(("flags", "message"), [
    (["--socket-dir", "/nonexistent-sockets"], "ps: socket folder /nonexistent-sockets: not a directory\n"),
    (["--timeout", "0"], "ps: --timeout and --interval must be positive\n"),
])
def test_ps_with_bad_flags_is_one_line_on_stderr(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("ps checks root first")
    assert main(["ps", *flags]) == 1
    assert capsys.readouterr().err == "wasmvisor: " + message


def test_ps_on_an_empty_socket_folder_says_nothing_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("ps needs root")
    assert main(["ps", "--socket-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"no wasmvisor supervisor listens in {tmp_path}\n"


def test_ps_watch_redraws_in_place_until_interrupted(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("ps needs root")
    cli = Path(sys.executable).parent / "wasmvisor"
    proc = subprocess.Popen([str(cli), "ps", "--watch", "--interval", "0.05", "--socket-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    watchdog = threading.Timer(30, proc.kill)  # a command that hangs ends the test, not the suite
    watchdog.start()
    seen = ""
    while seen.count(CLEAR) < 2 and (char := proc.stdout.read(1)):  # two redraws
        seen += char
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    watchdog.cancel()

    assert proc.returncode == 0
    assert (seen + rest).split(CLEAR)[1] == f"no wasmvisor supervisor listens in {tmp_path}\n"
