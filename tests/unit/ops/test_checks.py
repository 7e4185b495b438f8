"""`wasmvisor doctor`'s judgements, on what it would read from a node."""

from __future__ import annotations

import tomllib

from wasmvisor.ops import checks

V3 = """version = 3
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
"""
V3_OURS = V3 + """[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasm]
  runtime_type = "io.containerd.wasmvisor.v1"
"""
V2_OURS = """version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmvisor]
  runtime_type = "io.containerd.wasmvisor.v1"
"""


def test_versions_are_read_from_containerd_version_output() -> None:
    assert checks.containerd_version("containerd github.com/containerd/containerd/v2 v2.1.9 abc\n") == (2, 1, 9)
    assert checks.containerd_version("containerd containerd.io 1.6.20~ds1 1.6.20~ds1-1+b1\n") == (1, 6, 20)
    assert checks.containerd_version("cannot run: no such file") is None


def test_containerd_absent_or_too_old_fails_with_a_fix() -> None:
    absent = checks.check_containerd("/run/c.sock", None, None)
    old = checks.check_containerd("/run/c.sock", 10, (1, 5, 9))

    assert not absent.ok and "nothing listens on /run/c.sock" in absent.detail and "--address" in absent.fix
    assert not old.ok and "1.5.9" in old.detail
    assert checks.check_containerd("/run/c.sock", 10, (2, 1, 9)).ok


def test_the_config_file_comes_from_containerds_command_line() -> None:
    assert checks.config_path_of(["containerd", "--config", "/x.toml"]) == "/x.toml"
    assert checks.config_path_of(["containerd", "-c", "y.toml", "--log-level", "debug"]) == "y.toml"
    assert checks.config_path_of(["containerd", "--config=/z.toml"]) == "/z.toml"
    assert checks.config_path_of(["containerd"]) is None


def test_a_handler_is_found_in_the_2x_and_1x_forms() -> None:
    v3 = checks.check_config("c.toml", tomllib.loads(V3_OURS))
    v2 = checks.check_config("c.toml", tomllib.loads(V2_OURS), handler="wasmvisor")

    assert v3.ok and v3.detail == "c.toml: CRI handler(s) wasm -> io.containerd.wasmvisor.v1"
    assert v2.ok and "wasmvisor -> io.containerd.wasmvisor.v1" in v2.detail


def test_a_config_without_the_handler_fails_and_names_the_section_to_add() -> None:
    missing = checks.check_config("c.toml", tomllib.loads(V3))
    wrong_name = checks.check_config("c.toml", tomllib.loads(V3_OURS), handler="runc")

    assert not missing.ok and "no CRI runtime handler" in missing.detail
    assert 'io.containerd.cri.v1.runtime".containerd.runtimes.wasmvisor]' in missing.fix
    assert not wrong_name.ok and "'io.containerd.runc.v2'" in wrong_name.detail
    assert 'runtimes.runc] runtime_type = "io.containerd.wasmvisor.v1"' in wrong_name.fix


def test_a_disabled_cri_plugin_needs_no_handler_and_a_shim_sandboxer_is_accepted() -> None:
    off = checks.check_config("c.toml", {"version": 3, "disabled_plugins": ["io.containerd.cri.v1.runtime"]})
    shim = tomllib.loads(V3_OURS.replace('wasmvisor.v1"', 'wasmvisor.v1"\n  sandboxer = "shim"'))

    assert off.ok and "CRI plugin is disabled" in off.detail
    accepted = checks.check_config("c.toml", shim)
    assert accepted.ok and 'sandboxer = "shim"' in accepted.detail
    assert not checks.check_config("c.toml", None, "No such file or directory").ok


def test_the_shim_is_looked_for_where_containerd_looks() -> None:
    assert checks.shim_candidates("/var/lib", "/usr/bin:/bin:/usr/bin", "/opt/ctrd") == [
        "/var/lib/containerd-shim-wasmvisor-v1", "/usr/bin/containerd-shim-wasmvisor-v1",
        "/bin/containerd-shim-wasmvisor-v1", "/opt/ctrd/containerd-shim-wasmvisor-v1"]


def test_a_missing_shim_or_another_build_fails_with_the_link_to_make() -> None:
    ours = "x:\n  Version: 0.1.0\n  Revision: aaa\n"
    missing = checks.check_shim(None, "/usr/bin", "/venv/bin/shim", "", ours)
    other = checks.check_shim("/usr/bin/shim", "/usr/bin", "/venv/bin/shim", "x:\n  Revision: bbb\n", ours)

    assert not missing.ok and "not on containerd's PATH (/usr/bin)" in missing.detail
    assert missing.fix.startswith("ln -sf /venv/bin/shim /usr/local/bin/containerd-shim-wasmvisor-v1")
    assert not other.ok and "another build (Revision: bbb; this one: Revision: aaa)" in other.detail
    assert checks.check_shim("/usr/bin/shim", "/usr/bin", "/venv/bin/shim", ours, ours).ok


def test_cache_kernel_and_cgroups() -> None:
    assert checks.check_cache("/c", "", "", 10 * 2**30).ok
    assert not checks.check_cache("/c", "Read-only file system", "", None).ok
    assert not checks.check_cache("/c", "", "", 2**20).ok
    assert checks.check_kernel({"Seccomp": "0", "NoNewPrivs": "0"}, "kill_process kill_thread trap errno log").ok
    assert not checks.check_kernel({"NoNewPrivs": "0"}, None).ok
    assert not checks.check_cgroups("none").ok and checks.check_cgroups("unified (cgroup v2)").ok
