"""The systemd cgroup driver's side that needs no systemd: which cgroups become units, the properties a
scope or slice is started with, and the order of calls (against a stand-in manager that makes the
cgroup folder as systemd would). The real D-Bus calls run in the VM: tests/e2e/test_systemd_cgroups.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.cgroups.test_v2 import fake_level
from wasmvisor import cgroups
from wasmvisor.cgroups import systemd_bus, systemd_unit
from wasmvisor.cgroups.paths import is_slice_name, resolve, unit_names
from wasmvisor.cgroups.resources import Resources
from wasmvisor.cgroups.systemd_unit import SystemdUnitCgroup, quota_per_second, unit_properties
from wasmvisor.cgroups.v1 import V1Cgroup
from wasmvisor.cgroups.v2 import V2Cgroup
from wasmvisor.errors import FailedPrecondition, Internal, InvalidArgument

SCOPE_PATH = "kubepods-besteffort-pod1.slice:cri-containerd:abc"
SCOPE_DIR = "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"


class FakeManager:
    """Records the calls; starting a unit makes its cgroup folder under `root` as systemd would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, str, Any]] = []
        self.refuse: Exception | None = None
        self.exists = 0

    def start_transient(self, unit: str, properties: list[systemd_bus.Property]) -> None:
        if self.refuse:
            raise self.refuse
        if self.exists:
            self.exists -= 1
            raise FailedPrecondition(f"systemd unit {unit}: start: Unit {unit} was already loaded or has a fragment "
                                     "file. (org.freedesktop.systemd1.UnitExists)")
        self.calls.append(("start", unit, dict(properties)))
        folder = self.root / (SCOPE_DIR if unit.endswith(".scope") else SCOPE_DIR.rsplit("/", 1)[0])
        fake_level(folder)
        pids = dict(properties).get("PIDs")
        if pids:
            (folder / "cgroup.procs").write_text(f"{pids[1][0]}\n")

    def stop(self, unit: str) -> None:
        self.calls.append(("stop", unit, None))

    def reset_failed(self, unit: str) -> None:
        self.calls.append(("reset-failed", unit, None))

    def set_properties(self, unit: str, properties: list[systemd_bus.Property]) -> None:
        self.calls.append(("set", unit, dict(properties)))

    def active_state(self, unit: str) -> str:
        return ""


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeManager:
    fake = FakeManager(tmp_path)
    fake_level(tmp_path)

    @contextlib.contextmanager
    def connect(unit: str) -> Iterator[FakeManager]:
        yield fake

    monkeypatch.setattr(systemd_unit.SystemdManager, "connect", connect)
    return fake


def test_a_slice_name_alone_is_the_slice_folder_and_its_unit():
    assert is_slice_name("kubepods-besteffort-pod1.slice") and not is_slice_name("/kubepods/pod1")
    assert resolve("kubepods-besteffort-pod1.slice", "ns", "id") == (
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice")
    assert unit_names("kubepods-besteffort-pod1.slice") == (
        "kubepods-besteffort-pod1.slice", "kubepods-besteffort.slice")
    assert unit_names(SCOPE_PATH) == ("cri-containerd-abc.scope", "kubepods-besteffort-pod1.slice")
    assert unit_names(":docker:abc") == ("docker-abc.scope", "system.slice")


def test_systemd_forms_are_units_only_on_cgroup_v2_with_systemd(tmp_path: Path):
    root = str(tmp_path)
    scope = cgroups.open_cgroup(SCOPE_PATH, "ns", "abc", root=root, version=2, systemd=True)
    assert isinstance(scope, SystemdUnitCgroup) and scope.unit == "cri-containerd-abc.scope"
    assert scope.path == "/" + SCOPE_DIR and not scope.ready
    pod = cgroups.open_cgroup("kubepods-besteffort-pod1.slice", "ns", "sb", root=root, version=2, systemd=True)
    assert isinstance(pod, SystemdUnitCgroup) and pod.unit == "kubepods-besteffort-pod1.slice" and pod.ready
    direct = cgroups.open_cgroup(SCOPE_PATH, "ns", "abc", root=root, version=2, systemd=False)
    assert type(direct) is V2Cgroup and direct.path == "/" + SCOPE_DIR
    assert type(cgroups.open_cgroup("/ns/abc", "ns", "abc", root=root, version=2, systemd=True)) is V2Cgroup
    (tmp_path / "memory").mkdir()
    assert isinstance(cgroups.open_cgroup(SCOPE_PATH, "ns", "abc", root=root, version=1, systemd=True), V1Cgroup)


def test_limits_become_the_unit_properties_systemd_writes_back():
    res = Resources(memory_limit=64 << 20, memory_swap=128 << 20, memory_reservation=1 << 20, cpu_shares=1024,
                    cpu_quota=50_000, cpu_period=100_000, pids_limit=-1)
    assert dict(unit_properties(res)) == {
        "MemoryMax": ("t", 64 << 20), "MemorySwapMax": ("t", 64 << 20), "MemoryLow": ("t", 1 << 20),
        "CPUWeight": ("t", 39), "CPUQuotaPeriodUSec": ("t", 100_000), "CPUQuotaPerSecUSec": ("t", 500_000),
        "TasksMax": ("t", systemd_bus.UNIT_INFINITY),
    }
    assert unit_properties(Resources()) == []
    assert quota_per_second(33_333, 100_000) == 340_000  # up to systemd's 10 ms steps, as runc rounds


def test_a_scope_starts_with_its_first_process_delegated_with_its_limits(manager: FakeManager, tmp_path: Path):
    cg = cgroups.open_cgroup(SCOPE_PATH, "ns", "abc", root=str(tmp_path), version=2, systemd=True)
    assert isinstance(cg, SystemdUnitCgroup)
    cg.create()
    cg.apply(Resources(memory_limit=64 << 20))
    assert cg.oom_kills() == 0 and manager.calls == []  # nothing to start without a process
    cg.add(4242)
    kind, unit, props = manager.calls[0]
    assert (kind, unit) == ("start", "cri-containerd-abc.scope")
    assert props["PIDs"] == ("au", [4242]) and props["Slice"] == ("s", "kubepods-besteffort-pod1.slice")
    assert props["Delegate"] == ("b", True) and props["MemoryAccounting"] == ("b", True)
    assert props["MemoryMax"] == ("t", 64 << 20)
    assert (tmp_path / SCOPE_DIR / "memory.max").read_text() == str(64 << 20)  # written in the cgroup too
    assert cg.ready
    cg.add(4343)  # an exec joins the running scope directly
    assert (tmp_path / SCOPE_DIR / "cgroup.procs").read_text().split()[0] == "4343"
    cg.apply(Resources(memory_limit=32 << 20))  # Update: systemd first, then the file
    assert manager.calls[-1] == ("set", "cri-containerd-abc.scope", {"MemoryMax": ("t", 32 << 20)})
    assert (tmp_path / SCOPE_DIR / "memory.max").read_text() == str(32 << 20)


def test_remove_stops_the_unit_and_clears_a_failed_state(manager: FakeManager, tmp_path: Path):
    cg = cgroups.open_cgroup(SCOPE_PATH, "ns", "abc", root=str(tmp_path), version=2, systemd=True)
    assert isinstance(cg, SystemdUnitCgroup)
    cg.create()
    cg.add(4242)
    for name in (tmp_path / SCOPE_DIR).iterdir():
        name.unlink()  # what an rmdir of the real cgroup folder needs
    cg.remove()
    assert [c[:2] for c in manager.calls[1:]] == [("stop", "cri-containerd-abc.scope"),
                                                  ("reset-failed", "cri-containerd-abc.scope")]
    assert not (tmp_path / SCOPE_DIR).exists()


def test_a_pod_slice_the_kubelet_did_not_make_starts_at_create(manager: FakeManager, tmp_path: Path):
    cg = cgroups.open_cgroup("kubepods-besteffort-pod1.slice", "ns", "sb", root=str(tmp_path), version=2,
                             systemd=True)
    assert cg is not None and not cg.exists()
    cg.create()
    assert [c[:2] for c in manager.calls] == [("reset-failed", "kubepods-besteffort-pod1.slice"),
                                              ("start", "kubepods-besteffort-pod1.slice")]
    assert "PIDs" not in manager.calls[1][2]
    assert cg.exists()


def test_systemd_refusing_a_scope_is_an_error_naming_the_unit(manager: FakeManager, tmp_path: Path):
    manager.refuse = InvalidArgument("systemd unit cri-containerd-abc.scope: start: Cannot set property TasksMax, "
                                     "or unknown property. (org.freedesktop.DBus.Error.InvalidArgs)")
    cg = cgroups.open_cgroup(SCOPE_PATH, "ns", "abc", root=str(tmp_path), version=2, systemd=True)
    assert cg is not None
    cg.create()
    with pytest.raises(InvalidArgument, match=r"systemd unit cri-containerd-abc.scope: start: Cannot set property"):
        cg.add(4242)
    assert not cg.ready


def test_a_leftover_unit_of_the_same_name_is_reset_and_started_again(manager: FakeManager, tmp_path: Path):
    manager.exists = 1
    cg = cgroups.open_cgroup(SCOPE_PATH, "ns", "abc", root=str(tmp_path), version=2, systemd=True)
    assert cg is not None
    cg.create()
    cg.add(4242)
    assert [c[:2] for c in manager.calls] == [("reset-failed", "cri-containerd-abc.scope"),
                                              ("start", "cri-containerd-abc.scope")]


def test_systemd_error_replies_name_the_unit_and_systemd_message():
    err = systemd_bus._error("x.scope", "start", "org.freedesktop.DBus.Error.InvalidArgs", "Unknown property")
    assert isinstance(err, InvalidArgument)
    assert err.message == "systemd unit x.scope: start: Unknown property (org.freedesktop.DBus.Error.InvalidArgs)"


def test_no_system_bus_is_an_error_naming_the_unit_and_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(systemd_bus, "SYSTEM_BUS_SOCKET", str(tmp_path / "missing"))
    with pytest.raises(Internal, match=r"systemd unit a.scope: cannot reach the D-Bus system bus at .*missing"):
        with systemd_bus.SystemdManager.connect("a.scope"):
            pass
