"""One definition of the shim's socket names and wire formats, two implementations: the Python shim
(start.py, claim.py, template_client.py, template_protocol.py, leftover_cgroup.py) and the compiled
front (front.c) answer the same vectors, front_vectors.json. The front runs in its `--front-check`
mode, which prints what it computes; it may hand an input to Python (prints `python`) only where the
vector says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from wasmvisor.supervisor.shim import claim, leftover_cgroup, start, template_client, template_protocol
from wasmvisor.supervisor.shim.cliargs import parse_args

VECTORS: dict[str, Any] = json.loads(Path(__file__).with_name("front_vectors.json").read_text(encoding="utf-8"))
SOURCE = Path(start.__file__).with_name("front.c")
INSTALLED = Path(sysconfig.get_path("scripts")) / "containerd-shim-wasmvisor-v1"


def _ids(kind: str, key: str) -> list[str]:
    return [f"{kind}-{n}-{str(v[key])[:24]}" for n, v in enumerate(VECTORS[kind])]


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The front the venv's install built, else one compiled here from front.c."""
    if _is_elf(INSTALLED):
        return INSTALLED
    compiler = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if compiler is None:
        pytest.skip("no C compiler: the Python shim is the binary here, and there is no front to compare")
    out = tmp_path_factory.mktemp("front") / "front"
    subprocess.run([compiler, "-O2", "-o", str(out), str(SOURCE)], check=True)
    return out


def check(front: Path, *words: str) -> str:
    done = subprocess.run([str(front), "--front-check", *words], capture_output=True, check=True)
    return done.stdout.decode("utf-8", "surrogateescape")


def write_bundle(folder: Path, config: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(config, encoding="utf-8")
    return folder


# --- socket naming --------------------------------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS["socket_path"], ids=_ids("socket_path", "group"))
def test_python_names_the_group_socket_as_the_vectors_say(v: dict[str, Any]) -> None:
    if v["path"] is None:
        with pytest.raises(Exception, match="longer than"):
            start.socket_path(v["address"], v["namespace"], v["group"], v["dir"])
    else:
        assert start.socket_path(v["address"], v["namespace"], v["group"], v["dir"]) == v["path"]


@pytest.mark.parametrize("v", VECTORS["socket_path"], ids=_ids("socket_path", "group"))
def test_the_front_names_the_group_socket_as_the_vectors_say(front: Path, v: dict[str, Any]) -> None:
    got = check(front, "socket-path", v["address"], v["namespace"], v["group"], v["dir"]).strip()
    assert got == (v["path"] or "too long")


# --- the group key from config.json -----------------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS["group"], ids=_ids("group", "id"))
def test_python_reads_the_group_as_the_vectors_say(tmp_path: Path, v: dict[str, Any]) -> None:
    assert start.group_of(str(write_bundle(tmp_path, v["config"])), v["id"]) == v["group"]


@pytest.mark.parametrize("v", VECTORS["group"], ids=_ids("group", "id"))
def test_the_front_reads_the_group_or_hands_it_to_python(front: Path, tmp_path: Path, v: dict[str, Any]) -> None:
    got = check(front, "group", str(write_bundle(tmp_path, v["config"])), v["id"]).removesuffix("\n")
    assert got == ("python" if v.get("front") == "python" else v["group"])


# --- the claim ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS["claim_request"], ids=_ids("claim_request", "id"))
def test_both_encode_the_claim_alike(front: Path, v: dict[str, Any]) -> None:
    assert claim.encode_request(v["id"]).hex() == v["frame"]
    assert check(front, "claim-request", v["id"]).strip() == v["frame"]


@pytest.mark.parametrize("task_id", ["t1", "", "x" * 200])
def test_both_encode_deletes_release_alike(front: Path, task_id: str) -> None:
    from wasmvisor.supervisor.shim.delete import RELEASE_TIMEOUT

    expected = claim.encode_request(task_id, RELEASE_TIMEOUT, claim.RELEASE).hex()
    assert check(front, "release-request", task_id).strip() == expected


@pytest.mark.parametrize("v", VECTORS["claim_status"], ids=_ids("claim_status", "frame"))
def test_both_read_the_claims_answer_alike(front: Path, v: dict[str, Any]) -> None:
    try:
        status = claim.decode_response(bytes.fromhex(v["frame"]))
    except ValueError:
        status = -1
    assert status == v["status"]
    assert int(check(front, "claim-status", v["frame"])) == v["status"]


# --- the template ----------------------------------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS["template_path"], ids=_ids("template_path", "stamp"))
def test_both_name_the_template_socket_alike(front: Path, v: dict[str, Any]) -> None:
    assert template_client.template_path(v["dir"], v["address"], v["command"], v["stamp"]) == v["path"]
    got = check(front, "template-path", v["dir"], v["address"], v["stamp"], *v["command"]).strip()
    assert got == v["path"]


@pytest.mark.parametrize("v", VECTORS["template_request"], ids=_ids("template_request", "cwd"))
def test_both_encode_the_template_request_alike(front: Path, v: dict[str, Any]) -> None:
    env = [f"{k}={val}" for k, val in v["env"]]
    assert template_protocol.encode_request(v["argv"], dict(v["env"]), v["cwd"]).hex() == v["request"]
    got = check(front, "template-request", v["cwd"], str(len(v["argv"])), *v["argv"], *env).strip()
    assert got == v["request"]


def test_both_stamp_the_package_folder_alike(front: Path, tmp_path: Path) -> None:
    """Edited, added and removed modules change the stamp; other files and linked folders do not count."""
    (tmp_path / "pkg" / "sub" / "__pycache__").mkdir(parents=True)
    for name, mtime in [("a.py", 1_700_000_000_123_456_789), ("sub/b.py", 1_700_000_001_000_000_001),
                        ("sub/c.so", 1_600_000_000_000_000_000), ("sub/__pycache__/b.cpython-311.pyc", 1_800_000_000),
                        ("notes.txt", 1_900_000_000_000_000_000)]:
        path = tmp_path / "pkg" / name
        path.write_text("x")
        os.utime(path, ns=(mtime, mtime))
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "z.py").write_text("x")
    (tmp_path / "pkg" / "linked").symlink_to(tmp_path / "outside")
    stamp = template_client.code_stamp(str(tmp_path / "pkg"))
    assert stamp == "1700000001000000001.3"
    assert check(front, "code-stamp", str(tmp_path / "pkg")).strip() == stamp


@pytest.mark.parametrize("v", VECTORS["serve_argv"], ids=_ids("serve_argv", "start_argv"))
def test_both_build_the_supervisors_command_line_alike(front: Path, v: dict[str, Any]) -> None:
    got = check(front, "serve-argv", v["bundle"], v["group"], v["path"], *v["start_argv"]).splitlines()
    if v.get("front") == "python":
        assert got == ["python"]
        return
    args = parse_args(v["start_argv"])
    assert start.daemon_command(args, bundle=v["bundle"], group=v["group"], socket=v["path"], launcher=[]) == v["serve"]
    assert got == v["serve"]


# --- delete's nothing-left check ---------------------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS["cgroup_may_exist"], ids=_ids("cgroup_may_exist", "config"))
def test_both_tell_whether_a_cgroup_may_be_left(front: Path, tmp_path: Path, v: dict[str, Any]) -> None:
    bundle = write_bundle(tmp_path / "bundle", v["config"])
    root = tmp_path / "root"
    root.mkdir()
    for folder in v["folders"]:
        (root / folder).mkdir(parents=True)
    assert leftover_cgroup.may_exist(str(bundle), v["namespace"], v["id"], str(root)) is v["may_exist"]
    got = check(front, "cgroup-may-exist", str(bundle), v["namespace"], v["id"], str(root)).strip()
    assert got == ("yes" if v["may_exist"] else "no")
