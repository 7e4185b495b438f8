"""The exec worker's pure parts: the exec's process object checked, and which of the container
process's namespaces it joins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasmvisor.errors import InvalidArgument
from wasmvisor.worker.exec_process import container_namespaces, parse_process
from wasmvisor.worker.spec_linux import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID


def test_an_exec_process_gives_args_env_and_cwd() -> None:
    proc = parse_process({"args": ["/bin/sh", "-c", "id"], "env": ["A=1"], "cwd": "/tmp", "user": {"uid": 1}}, "e")

    assert (proc.args, proc.env, proc.cwd) == (("/bin/sh", "-c", "id"), ("A=1",), "/tmp")
    assert proc.raw["user"] == {"uid": 1}
    assert parse_process({"args": ["/a.wasm"]}, "e").cwd == "/"


@pytest.mark.parametrize(("process", "message"), [
    (None, "exec 'e1' in task t: the process spec is missing"),
    ({"args": []}, "process.args must be a non-empty list of strings"),
    ({"args": ["a", 1]}, "process.args must be a non-empty list of strings"),
    ({"args": ["a"], "env": "A=1"}, "process.env must be a list of strings"),
    ({"args": ["a"], "cwd": "tmp"}, "process.cwd 'tmp' is not an absolute path"),
])
def test_a_bad_exec_process_is_invalid_argument_naming_the_exec(process: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_process(process, "exec 'e1' in task t")  # type: ignore[arg-type]


def _fake_proc(root: Path, names: tuple[str, ...]) -> Path:
    ns = root / "ns"
    ns.mkdir(parents=True)
    for name in names:
        (ns / name).write_text(name)
    return ns


def test_every_namespace_of_the_container_is_joined_through_its_process(tmp_path: Path) -> None:
    doc = {"linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]}}
    own = _fake_proc(tmp_path / "self", ("pid", "net", "mnt", "uts", "ipc"))

    joins = container_namespaces(doc, 4242, own=str(own))

    assert {ns.type: ns.path for ns in joins} == {
        "pid": "/proc/4242/ns/pid", "network": "/proc/4242/ns/net", "mount": "/proc/4242/ns/mnt",
        "uts": "/proc/4242/ns/uts", "ipc": "/proc/4242/ns/ipc",
    }
    assert {ns.flag for ns in joins} >= {CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWNS}


def test_namespaces_this_process_shares_already_are_left_out() -> None:
    doc = {"linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]}}

    assert container_namespaces(doc, os.getpid()) == []
