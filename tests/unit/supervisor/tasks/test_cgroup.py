import pytest
from google.protobuf.any_pb2 import Any

from wasmvisor.cgroups import Resources
from wasmvisor.cgroups.base import Cgroup
from wasmvisor.errors import InvalidArgument
from wasmvisor.supervisor.tasks.cgroup import LINUX_RESOURCES_TYPE, TaskCgroup, parse_update


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

def test_an_oom_notification_before_the_kill_is_counted_is_looked_at_again():
    """cgroup v1 signals the eventfd when the cgroup runs out of memory, before the OOM killer has
    counted its victim: the kill that lands a little later is still reported, without another wake-up."""
    import asyncio
    import os

    async def scenario() -> list[int]:
        reported: list[int] = []
        cg = CountingCgroup()
        cg.drain_oom_events = lambda fd: None  # type: ignore[assignment,method-assign]
        tc = TaskCgroup("t", cg, Resources(), on_oom=lambda: reported.append(cg.kills))
        tc._loop = asyncio.get_running_loop()
        r, w = os.pipe()
        tc._oom_fd = r  # what _unwatch would close
        try:
            tc._on_memory_event()  # the notification: nothing counted yet
            assert reported == []
            await asyncio.sleep(0.03)
            cg.kills = 1  # the OOM killer is done
            await asyncio.sleep(0.3)
        finally:
            os.close(r)
            os.close(w)
            tc._oom_fd = -1
        return reported

    assert asyncio.run(scenario()) == [1]
