"""The generated entry script: `python -I -S` for the shim binary, with `site` loaded again for all but `start`."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasmvisor.proto.containerd.task.v2 import shim_pb2
from wasmvisor.supervisor.shim import entry_script, start


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "containerd-shim-wasmvisor-v1"
    assert entry_script.write(str(path), entry_script.script_text(sys.executable, entry_script.package_root()))
    return path


@pytest.fixture
def sockets() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="wv-", dir="/tmp"))
    yield top
    shutil.rmtree(top)


def test_script_runs_python_isolated_without_site_and_appends_the_package_root() -> None:
    text = entry_script.script_text("/venv/bin/python", "/srv/site-packages")
    lines = text.splitlines()
    assert lines[0] == "#!/venv/bin/python -IS"
    assert "sys.path.append('/srv/site-packages')" in lines
    assert lines[-2:] == ["from wasmvisor.supervisor.shim.main import main", "main()"]


def test_an_interpreter_path_with_spaces_is_refused() -> None:
    with pytest.raises(ValueError, match="white space"):
        entry_script.script_text("/my venv/bin/python", "/x")


def test_package_root_holds_the_package() -> None:
    assert (Path(entry_script.package_root()) / "wasmvisor" / "__init__.py").is_file()


def test_write_is_executable_and_idempotent(script: Path) -> None:
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    text = script.read_text()
    assert entry_script.write(str(script), text) is False
    assert not [p for p in script.parent.iterdir() if p.name.endswith(".tmp")]


def test_main_writes_the_script_for_the_running_interpreter(tmp_path: Path) -> None:
    target = tmp_path / "shim"
    assert entry_script.main([str(target)]) == 0
    assert target.read_text().startswith(f"#!{sys.executable} -IS\n")
    assert entry_script.main([]) == 2


def test_generated_script_prints_the_version(script: Path) -> None:
    done = subprocess.run([str(script), "-v"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("containerd-shim-wasmvisor-v1:\n  Version: ")


def test_generated_script_start_reuses_a_live_supervisor(script: Path, sockets: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    path = start.socket_path("/run/c.sock", "ns", "t1", str(sockets))
    env = {**os.environ, start.SOCKET_DIR_ENV: str(sockets)}
    env.pop("WASMVISOR_PROTOCOL", None)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(4)
        done = subprocess.run([str(script), "-namespace", "ns", "-address", "/run/c.sock", "-id", "t1", "start"],
                              cwd=bundle, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "unix://" + path, "")


def test_generated_script_delete_loads_site_for_protobuf(script: Path, tmp_path: Path) -> None:
    (tmp_path / "init.pid").write_text("0")  # a task left behind: the answer is built with protobuf
    done = subprocess.run([str(script), "-namespace", "ns", "-id", "t1", "-bundle", str(tmp_path), "delete"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    response = shim_pb2.DeleteResponse()
    response.ParseFromString(done.stdout)
    assert response.exit_status == 137


def _python_lines(*lines: str) -> list[str]:
    """What a fresh interpreter prints for the given program lines (run from the package's folder)."""
    out = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, check=True,
                         cwd=entry_script.package_root())
    return out.stdout.splitlines()


def test_asyncio_is_imported_without_ssl_which_stays_importable() -> None:
    assert _python_lines(
        "import sys",
        "from wasmvisor.supervisor.shim.entry_script import import_asyncio_without_ssl",
        "import_asyncio_without_ssl()",
        "import asyncio.base_events, asyncio.selector_events, asyncio.sslproto",
        "print('asyncio' in sys.modules, 'ssl' in sys.modules, asyncio.base_events.ssl,"
        " asyncio.selector_events.ssl, asyncio.sslproto.ssl)",
        "import ssl",
        "print(ssl.SSLContext.__name__)",
    ) == ["True False None None None", "SSLContext"]


def test_asyncio_without_ssl_leaves_a_loaded_ssl_alone() -> None:
    assert _python_lines(
        "import ssl",
        "from wasmvisor.supervisor.shim.entry_script import import_asyncio_without_ssl",
        "import_asyncio_without_ssl()",
        "import asyncio.base_events",
        "print(asyncio.base_events.ssl is ssl)",
    ) == ["True"]
