"""cgroup v2 against a fake cgroup folder tree (this host is v1), and the parts that work for real
on the host's controller-less cgroup2 mount (/sys/fs/cgroup/unified)."""

import os
import subprocess
from pathlib import Path

import pytest

from wasmvisor import cgroups
from wasmvisor.cgroups import base
from wasmvisor.cgroups.resources import Resources
from wasmvisor.cgroups.v2 import V2Cgroup
from wasmvisor.errors import Internal, InvalidArgument

INTERFACE = ("cgroup.procs", "cgroup.freeze", "cgroup.events", "cgroup.controllers", "cgroup.subtree_control",
             "memory.max", "memory.low", "memory.swap.max", "memory.current", "memory.stat", "memory.events",
             "cpu.weight", "cpu.max", "cpu.stat", "cpuset.cpus", "cpuset.mems", "pids.max", "pids.current")


def fake_level(folder: Path, controllers: str = "cpuset cpu io memory pids") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in INTERFACE:
        (folder / name).touch()
    (folder / "cgroup.controllers").write_text(controllers + "\n")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    fake_level(tmp_path)
    fake_level(tmp_path / "ns")
    fake_level(tmp_path / "ns" / "task")  # what the kernel would show once mkdir made it
    return tmp_path


def test_open_cgroup_with_version_2_is_one_folder_under_root(tree: Path):
    cg = cgroups.open_cgroup("", "ns", "task", root=str(tree), version=2)
    assert isinstance(cg, V2Cgroup) and cg.dir == str(tree / "ns" / "task") and cg.path == "/ns/task"


def test_create_enables_the_controllers_in_every_ancestor(tree: Path):
    (tree / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (tree / "ns" / "cgroup.subtree_control").write_text("memory")
    cg = V2Cgroup("/ns/task", str(tree))
    cg.create()
    assert (tree / "cgroup.subtree_control").read_text() == "+cpuset +cpu +io +memory +hugetlb +pids"
    assert (tree / "ns" / "cgroup.subtree_control").read_text().startswith("+cpuset +cpu +io +pids")
    assert (tree / "ns" / "task" / "cgroup.subtree_control").read_text() == ""  # the leaf enables nothing


def test_create_makes_missing_folders(tmp_path: Path):
    fake_level(tmp_path)
    V2Cgroup("/newtask", str(tmp_path)).create()
    assert (tmp_path / "newtask").is_dir()


def test_create_under_a_file_names_the_path(tree: Path):
    (tree / "ns" / "afile").write_text("")
    with pytest.raises(InvalidArgument, match=r"linux.cgroupsPath /ns/afile/x: cannot create .*/ns/afile"):
        V2Cgroup("/ns/afile/x", str(tree), given="/ns/afile/x").create()


def test_apply_writes_the_v2_files(tree: Path):
    cg = V2Cgroup("/ns/task", str(tree))
    cg.apply(Resources.parse({"memory": {"limit": 1 << 26, "reservation": 1 << 20, "swap": 1 << 27},
                              "cpu": {"shares": 1024, "quota": 50000, "period": 100000}, "pids": {"limit": 10}}))
    leaf = tree / "ns" / "task"
    assert (leaf / "memory.max").read_text() == str(1 << 26)
    assert (leaf / "memory.swap.max").read_text() == str(1 << 26)
    assert (leaf / "memory.low").read_text() == str(1 << 20)
    assert (leaf / "cpu.weight").read_text() == "39"
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert (leaf / "pids.max").read_text() == "10"


def test_apply_to_a_missing_file_names_it(tree: Path):
    (tree / "ns" / "task" / "pids.max").unlink()
    with pytest.raises(InvalidArgument, match=r"cannot write 10 to .*/ns/task/pids.max"):
        V2Cgroup("/ns/task", str(tree)).apply(Resources.parse({"pids": {"limit": 10}}))


def test_add_and_pids_use_cgroup_procs(tree: Path):
    cg = V2Cgroup("/ns/task", str(tree))
    cg.add(1234)
    assert (tree / "ns" / "task" / "cgroup.procs").read_text() == "1234"
    (tree / "ns" / "task" / "cgroup.procs").write_text("1234\n1240\n")
    assert cg.pids() == [1234, 1240]


def test_freeze_writes_cgroup_freeze_and_waits_for_frozen_1(tree: Path):
    leaf = tree / "ns" / "task"
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    cg = V2Cgroup("/ns/task", str(tree))
    cg.freeze()
    assert (leaf / "cgroup.freeze").read_text() == "1"
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    cg.thaw()
    assert (leaf / "cgroup.freeze").read_text() == "0"


def test_freeze_that_never_settles_is_undone_and_reported(tree: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(base, "FREEZE_TIMEOUT_SECONDS", 0.05)
    leaf = tree / "ns" / "task"
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    with pytest.raises(Internal, match="did not show frozen 1"):
        V2Cgroup("/ns/task", str(tree)).freeze()
    assert (leaf / "cgroup.freeze").read_text() == "0"


def test_metrics_and_oom_kills_come_from_the_files(tree: Path):
    leaf = tree / "ns" / "task"
    (leaf / "memory.current").write_text("7340032\n")
    (leaf / "memory.max").write_text("max\n")
    (leaf / "memory.stat").write_text("anon 4096\nfile 8192\ninactive_file 100\npgfault 7\nunknown_key 9\n")
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n")
    (leaf / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (leaf / "pids.current").write_text("4\n")
    (leaf / "pids.max").write_text("64\n")
    cg = V2Cgroup("/ns/task", str(tree))
    m = cg.metrics()
    assert cg.metrics_type == "io.containerd.cgroups.v2.Metrics"
    assert (m.memory.usage, m.memory.usage_limit, m.memory.anon, m.memory.file) == (7340032, 0, 4096, 8192)
    assert (m.memory.inactive_file, m.memory.pgfault) == (100, 7)
    assert (m.memory_events.max, m.memory_events.oom, m.memory_events.oom_kill) == (3, 2, 1)
    assert (m.cpu.usage_usec, m.cpu.user_usec, m.cpu.system_usec) == (1500, 1000, 500)
    assert (m.pids.current, m.pids.limit) == (4, 64)
    assert cg.oom_kills() == 1


def test_oom_events_fd_wakes_when_memory_events_changes(tree: Path):
    import select

    cg = V2Cgroup("/ns/task", str(tree))
    fd = cg.open_oom_events()
    try:
        assert select.select([fd], [], [], 0)[0] == []
        with open(tree / "ns" / "task" / "memory.events", "w") as f:
            f.write("oom_kill 1\n")
        assert select.select([fd], [], [], 1)[0] == [fd]
        cg.drain_oom_events(fd)
        assert select.select([fd], [], [], 0)[0] == []
    finally:
        os.close(fd)


def test_remove_takes_the_leaf_only(tmp_path: Path):
    fake_level(tmp_path)
    (tmp_path / "ns" / "task").mkdir(parents=True)
    cg = V2Cgroup("/ns/task", str(tmp_path))
    assert cg.exists()
    cg.remove()
    assert not cg.exists() and (tmp_path / "ns").is_dir()
    cg.remove()  # already gone: fine


UNIFIED = "/sys/fs/cgroup/unified"


@pytest.mark.skipif(cgroups.detect_version(UNIFIED) != 2 or os.geteuid() != 0, reason="needs root and a cgroup2 mount")
def test_real_cgroup2_mount_is_detected_and_freezes_a_process():
    cg = cgroups.open_cgroup(f"/wasmvisor-unit-{os.getpid()}/t", "ns", "id", root=UNIFIED)
    assert isinstance(cg, V2Cgroup)
    cg.create()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        cg.add(sleeper.pid)
        assert cg.pids() == [sleeper.pid]
        cg.freeze()
        state = Path(f"/proc/{sleeper.pid}/stat").read_text()
        assert "frozen 1" in (Path(cg.dir) / "cgroup.events").read_text(), state
        cg.thaw()
        cg.kill_all()
        sleeper.wait(5)
        cg.remove()
        assert not cg.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        for folder in (cg.dir, os.path.dirname(cg.dir)):
            try:
                os.rmdir(folder)
            except OSError:
                pass


def test_detect_version_of_a_plain_folder_is_0(tmp_path: Path):
    assert cgroups.detect_version(str(tmp_path)) == 0
    assert cgroups.open_cgroup("", "ns", "id", root=str(tmp_path)) is None
