"""config.json parsing, entrypoints and guest-path resolution (pure: no process started)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmvisor.errors import InvalidArgument
from wasmvisor.spec import group_of, load_spec, parse_entrypoint, resolve_in_root


def write_config(bundle: Path, doc: Any) -> None:
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))


def minimal(**process: Any) -> dict[str, Any]:
    return {"ociVersion": "1.0.2", "process": {"args": ["/app.wasm"], **process}, "root": {"path": "rootfs"}}


def test_load_spec_reads_what_containerd_writes(tmp_path: Path) -> None:
    doc = minimal(env=["PATH=/bin", "A=b=c"], cwd="/work", terminal=True)
    doc["annotations"] = {"io.kubernetes.cri.sandbox-id": "pod1"}
    doc["hostname"] = "box"
    doc["linux"] = {"resources": {"memory": {"limit": 33554432}}}
    write_config(tmp_path, doc)
    spec = load_spec(str(tmp_path))
    assert spec.args == ("/app.wasm",)
    assert spec.env == ("PATH=/bin", "A=b=c")
    assert spec.cwd == "/work"
    assert spec.terminal is True
    assert spec.annotations == {"io.kubernetes.cri.sandbox-id": "pod1"}
    assert spec.root_path == str(tmp_path / "rootfs")
    assert spec.hostname == "box"
    assert spec.memory_limit == 33554432
    assert spec.raw["ociVersion"] == "1.0.2"


def test_defaults_cwd_slash_no_terminal_no_annotations(tmp_path: Path) -> None:
    write_config(tmp_path, {"process": {"args": ["x.wasm"]}})
    spec = load_spec(str(tmp_path))
    assert (spec.cwd, spec.terminal, dict(spec.annotations), spec.env) == ("/", False, {}, ())
    assert spec.root_path == str(tmp_path / "rootfs")
    assert spec.memory_limit is None


def test_relative_bundle_and_absolute_root_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path / "b", {"process": {"args": ["a"]}, "root": {"path": "/abs/root"}})
    monkeypatch.chdir(tmp_path)
    assert load_spec("b").root_path == "/abs/root"
    write_config(tmp_path / "c", {"process": {"args": ["a"]}, "root": {"path": "../r"}})
    assert load_spec("c").root_path == str(tmp_path / "r")


def test_missing_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"config\.json: missing$") as err:
        load_spec(str(tmp_path))
    assert str(tmp_path) in err.value.message


def test_bad_json_says_which_line(tmp_path: Path) -> None:
    write_config(tmp_path, '{\n  "process": {\n    "args": ["a",]\n  }\n}')
    with pytest.raises(InvalidArgument, match=r"config\.json: not valid JSON at line 3: "):
        load_spec(str(tmp_path))


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ([1, 2], "not a JSON object"),
        ({"root": {}}, "process is missing"),
        ({"process": {}}, "process.args is empty"),
        ({"process": {"args": []}}, "process.args is empty"),
        ({"process": {"args": "/app.wasm"}}, "process.args must be a list of strings"),
        ({"process": {"args": ["a"], "env": ["NOEQUALS"]}}, "process.env[0] 'NOEQUALS' is not KEY=value"),
        ({"process": {"args": ["a"], "env": [1]}}, "process.env must be a list of strings"),
        ({"process": {"args": ["a"], "cwd": "rel"}}, "process.cwd 'rel' is not an absolute path"),
        ({"process": {"args": ["a"], "terminal": "yes"}}, "process.terminal must be true or false"),
        ({"process": {"args": ["a"]}, "annotations": {"a": 1}}, "annotations must map strings to strings"),
        ({"process": {"args": ["a"]}, "root": {"path": ""}}, "root.path must be a non-empty string"),
    ],
)
def test_invalid_specs_name_the_field(tmp_path: Path, doc: Any, problem: str) -> None:
    write_config(tmp_path, doc)
    with pytest.raises(InvalidArgument) as err:
        load_spec(str(tmp_path))
    assert err.value.message.endswith(f"config.json: {problem}")


def test_group_is_the_sandbox_id_else_the_task() -> None:
    assert group_of({"io.kubernetes.cri.sandbox-id": "pod"}, "task") == "pod"
    assert group_of({}, "task") == "task"
    assert group_of({"io.kubernetes.cri.sandbox-id": ""}, "task") == "task"


@pytest.mark.parametrize(
    ("args0", "expected"),
    [
        ("/app.wasm", ("/app.wasm", "_start")),
        ("/app.wasm#greet", ("/app.wasm", "greet")),
        ("app.wasm#a#b", ("app.wasm#a", "b")),
        ("/dir#1/app.wasm", ("/dir", "1/app.wasm")),
    ],
)
def test_parse_entrypoint(args0: str, expected: tuple[str, str]) -> None:
    assert parse_entrypoint(args0) == expected


@pytest.mark.parametrize(("args0", "problem"), [("", "empty module path"), ("#f", "empty module path"),
                                                ("/a.wasm#", "empty function name")])
def test_parse_entrypoint_rejects_empty_parts(args0: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        parse_entrypoint(args0)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "app" / "bin").mkdir(parents=True)
    (root / "app" / "bin" / "x.wasm").write_bytes(b"\0asm")
    (root / "lib").mkdir()
    os.symlink("/app/bin", root / "abs")  # absolute: means <root>/app/bin
    os.symlink("../../../../../lib", root / "app" / "up")  # climbs past the root: clamped
    os.symlink("bin/x.wasm", root / "app" / "rel.wasm")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("/etc/passwd", root / "passwd")  # the host's file must not be reached
    return root


@pytest.mark.parametrize(
    ("path", "cwd", "expected"),
    [
        ("/app/bin/x.wasm", "/", "app/bin/x.wasm"),
        ("bin/x.wasm", "/app", "app/bin/x.wasm"),
        ("./bin/../bin/x.wasm", "/app", "app/bin/x.wasm"),
        ("/abs/x.wasm", "/", "app/bin/x.wasm"),
        ("/app/rel.wasm", "/", "app/bin/x.wasm"),
        ("/app/up", "/", "lib"),
        ("/passwd", "/", "etc/passwd"),
        ("/missing/dir/../x", "/", "missing/x"),
        ("/", "/", ""),
    ],
)
def test_resolve_in_root_follows_symlinks_inside_the_root(
    rootfs: Path, path: str, cwd: str, expected: str
) -> None:
    assert resolve_in_root(str(rootfs), path, cwd) == os.path.join(str(rootfs), expected).rstrip("/")


@pytest.mark.parametrize(("path", "cwd"), [("../x", "/"), ("/../etc/passwd", "/"), ("../../x", "/app")])
def test_resolve_in_root_rejects_dotdot_escapes(rootfs: Path, path: str, cwd: str) -> None:
    with pytest.raises(InvalidArgument, match="escapes the container root"):
        resolve_in_root(str(rootfs), path, cwd)


def test_resolve_in_root_stops_symlink_loops(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        resolve_in_root(str(rootfs), "/loop1/x", "/")


@pytest.fixture(scope="module")
def property_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("rootfs"))
    os.makedirs(os.path.join(root, "a", "b"))
    os.symlink("/a", os.path.join(root, "abs"))
    os.symlink("../../../..", os.path.join(root, "a", "up"))
    os.symlink("up/loop1", os.path.join(root, "a", "loop1"))
    os.symlink("/etc/passwd", os.path.join(root, "passwd"))
    return root


@given(parts=st.lists(st.sampled_from(["a", "b", "..", ".", "abs", "up", "loop1", "passwd", ""]), max_size=8))
def test_resolve_in_root_never_leaves_the_root(property_root: str, parts: list[str]) -> None:
    try:
        host = resolve_in_root(property_root, "/" + "/".join(parts), "/")
    except InvalidArgument:
        return
    assert host == property_root or host.startswith(property_root + "/")
    assert ".." not in host.split("/")
