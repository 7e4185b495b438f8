"""The `delete` action looks for a leftover cgroup cheaply, and loads the cgroups package only when one may be there."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wasmvisor.supervisor.shim import entry_script, leftover_cgroup


@pytest.mark.parametrize(("given", "path"), [
    ("", "/ns/id"),
    ("/default/hello", "/default/hello"),
    ("//kubepods/./pod1/", "/kubepods/pod1"),
    ("pods/hello", None),
    ("system.slice:cri:abc", None),
    ("/a/../b", None),
    ("/", None),
])
def test_cgroup_path_of_the_default_and_absolute_forms(given: str, path: str | None) -> None:
    assert leftover_cgroup.cgroup_path(given, "ns", "id") == path


def _bundle(tmp_path: Path, spec: object) -> str:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return str(bundle)


def _v1_root(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup"
    for controller in ("memory", "pids", "freezer"):
        (root / controller).mkdir(parents=True)
    (root / "cpu,cpuacct").mkdir()
    (root / "cpu").symlink_to("cpu,cpuacct")
    return root


def test_no_config_json_or_no_linux_section_means_no_cgroup(tmp_path: Path) -> None:
    root = _v1_root(tmp_path)
    (root / "memory" / "ns" / "id").mkdir(parents=True)  # present, but the spec asked for none
    assert not leftover_cgroup.may_exist(str(tmp_path / "gone"), "ns", "id", str(root))
    spec = {"process": {"args": ["/x.wasm"]}, "annotations": {"linux": "not the section"}}
    assert not leftover_cgroup.may_exist(_bundle(tmp_path, spec), "ns", "id", str(root))


@pytest.mark.parametrize("controller", ["memory", "pids", "cpu,cpuacct"])
def test_a_v1_folder_in_any_hierarchy_may_be_a_leftover(tmp_path: Path, controller: str) -> None:
    root = _v1_root(tmp_path)
    bundle = _bundle(tmp_path, {"linux": {"cgroupsPath": "/default/task1"}})
    assert not leftover_cgroup.may_exist(bundle, "default", "task1", str(root))
    (root / controller / "default" / "task1").mkdir(parents=True)
    assert leftover_cgroup.may_exist(bundle, "default", "task1", str(root))


def test_the_default_path_is_namespace_and_id_on_v2(tmp_path: Path) -> None:
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("memory pids\n")
    bundle = _bundle(tmp_path, {"linux": {"namespaces": [{"type": "pid"}]}})
    assert not leftover_cgroup.may_exist(bundle, "ns", "id", str(root))
    (root / "ns" / "id").mkdir(parents=True)
    assert leftover_cgroup.may_exist(bundle, "ns", "id", str(root))


@pytest.mark.parametrize("spec", [
    {"linux": {"cgroupsPath": "pods/hello"}},
    {"linux": {"cgroupsPath": "system.slice:cri:abc"}},
    {"linux": {"cgroupsPath": 7}},
    {"linux": []},
    '{"linux": {',
])
def test_other_forms_and_broken_specs_are_left_to_the_cgroups_package(tmp_path: Path, spec: object) -> None:
    root = _v1_root(tmp_path)
    assert leftover_cgroup.may_exist(_bundle(tmp_path, spec), "ns", "id", str(root))


def test_usual_delete_loads_neither_site_nor_json_typing_signal_nor_the_cgroups_package(tmp_path: Path) -> None:
    # What containerd 1.6 runs after every task: the supervisor deleted the task and its cgroup.
    bundle = _bundle(tmp_path, {"process": {"args": ["/x.wasm"]},
                                "linux": {"cgroupsPath": f"/wasmvisor-unit-absent-{tmp_path.name}/t1"}})
    code = textwrap.dedent(f"""
        import io, sys
        sys.path.append({entry_script.package_root()!r})
        from wasmvisor.supervisor.shim import delete
        from wasmvisor.supervisor.shim.cliargs import ShimArgs
        out, err = io.BytesIO(), io.StringIO()
        args = ShimArgs(namespace="ns", id="t1", bundle={bundle!r}, action="delete")
        assert delete.run(args, stdout=out, stderr=err) == 0
        assert (out.getvalue(), err.getvalue()) == (b"", ""), (out.getvalue(), err.getvalue())
        print(" ".join(sorted(sys.modules)))
    """)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "wasmvisor.supervisor.shim.leftover_cgroup" in loaded
    heavy = {"site", "json", "orjson", "typing", "signal", "enum", "re", "ctypes", "wasmvisor.cgroups",
             "wasmvisor.supervisor.tasks.mounts", "google.protobuf"}
    assert loaded & heavy == set()
