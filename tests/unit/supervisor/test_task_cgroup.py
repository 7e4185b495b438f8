import pytest
from google.protobuf.any_pb2 import Any

from wasmvisor.cgroups import Resources
from wasmvisor.cgroups.base import Cgroup
from wasmvisor.errors import InvalidArgument
from wasmvisor.supervisor.task_cgroup import LINUX_RESOURCES_TYPE, TaskCgroup, parse_update


def test_update_resources_are_oci_linux_resources_json():
    value = b'{"memory": {"limit": 1048576}, "pids": {"limit": 5}}'
    res = parse_update(Any(type_url=LINUX_RESOURCES_TYPE, value=value))
    assert res.memory_limit == 1048576 and res.pids_limit == 5


@pytest.mark.parametrize("resources, problem", [
    (Any(), "resources are missing"),
    (Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/WindowsResources", value=b"{}"),
     "WindowsResources' are not understood"),
    (Any(type_url=LINUX_RESOURCES_TYPE, value=b"{not json"), "not valid JSON"),
    (Any(type_url=LINUX_RESOURCES_TYPE, value=b'{"memory": {"limit": "x"}}'), "memory.limit: 'x' is not an integer"),
])
def test_bad_update_is_invalid_argument(resources, problem):
    with pytest.raises(InvalidArgument, match=problem):
        parse_update(resources)


class CountingCgroup(Cgroup):
    """Only what check_oom touches."""

    def __init__(self) -> None:
        self.kills = 0
        self.path = "/ns/t"

    def oom_kills(self) -> int:
        return self.kills

    create = apply = add = pids = freeze = thaw = metrics = open_oom_events = None  # type: ignore[assignment]
    drain_oom_events = remove = exists = None  # type: ignore[assignment]


def test_each_oom_kill_is_reported_once():
    reported: list[int] = []
    cg = CountingCgroup()
    tc = TaskCgroup("t", cg, Resources(), on_oom=lambda: reported.append(cg.kills))
    assert tc.check_oom() is False
    cg.kills = 1
    assert tc.check_oom() is True and tc.check_oom() is False
    cg.kills = 3
    tc.check_oom()
    assert reported == [1, 3]


def test_spec_without_linux_section_gets_no_cgroup():
    assert TaskCgroup.create("t", "ns", {"process": {}}, on_oom=lambda: None) is None
    assert TaskCgroup.create("t", "ns", None, on_oom=lambda: None) is None
