import pytest

from wasmvisor.cgroups.paths import expand_slice, parse_proc_cgroup, resolve, systemd_path
from wasmvisor.errors import InvalidArgument


def test_empty_cgroups_path_is_namespace_slash_id_like_containerd():
    assert resolve("", "default", "hello") == "/default/hello"


def test_absolute_path_is_taken_from_the_hierarchy_root():
    assert resolve("/default/hello", "ns", "id") == "/default/hello"
    assert resolve("/a//b/", "ns", "id") == "/a/b"


def test_relative_path_is_taken_from_the_supervisor_own_cgroup_like_runc():
    own = {"memory": "/process_api/abc", "": "/"}
    assert resolve("pods/x", "ns", "id", own, "memory") == "/process_api/abc/pods/x"
    assert resolve("pods/x", "ns", "id", own, "cpu") == "/pods/x"


@pytest.mark.parametrize("given, path", [
    ("system.slice:cri-containerd:abc", "/system.slice/cri-containerd-abc.scope"),
    ("kubepods-besteffort-pod1.slice:cri-containerd:abc",
     "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"),
    (":docker:abc", "/system.slice/docker-abc.scope"),
    ("-.slice:p:n", "/p-n.scope"),
    ("machine.slice::inner.slice", "/machine.slice/inner.slice"),
])
def test_systemd_form_becomes_slice_folders_and_a_scope(given, path):
    assert resolve(given, "ns", "id") == path
    assert systemd_path(given) == path


def test_expand_slice_nests_dashed_names():
    assert expand_slice("a-b-c.slice") == "/a.slice/a-b.slice/a-b-c.slice"


@pytest.mark.parametrize("given, problem", [
    ("/x/../../etc", "'..' is not allowed"),
    ("../up", "'..' is not allowed"),
    ("/", "names the root cgroup"),
    ("/a\0b", "NUL"),
    ("bad:p:n", "does not end in .slice"),
    ("a--b.slice:p:n", "not a valid slice name"),
    ("system.slice:p:", "unit name"),
])
def test_bad_cgroups_path_is_invalid_argument_naming_it(given, problem):
    with pytest.raises(InvalidArgument, match=problem) as info:
        resolve(given, "ns", "id")
    assert str(info.value).startswith(f"linux.cgroupsPath {given}: ")


def test_proc_cgroup_is_parsed_per_controller_and_unified():
    text = "9:name=systemd:/\n4:memory:/process_api/x\n2:cpu,cpuacct:/c\n0::/u\n"
    assert parse_proc_cgroup(text) == {"systemd": "/", "memory": "/process_api/x", "cpu": "/c", "cpuacct": "/c",
                                       "": "/u"}
