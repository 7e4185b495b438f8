"""cgroup v1 against a fake tree of controller hierarchies (real ones are exercised end to end)."""

import errno
from pathlib import Path

import pytest

from wasmvisor import cgroups
from wasmvisor.cgroups import base
from wasmvisor.cgroups.resources import Resources
from wasmvisor.cgroups.v1 import V1Cgroup, hierarchies
from wasmvisor.errors import Internal, InvalidArgument

FILES = {
    "memory": ("memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.memsw.limit_in_bytes",
               "memory.swappiness", "memory.oom_control", "memory.stat", "memory.usage_in_bytes",
               "memory.max_usage_in_bytes", "memory.failcnt", "cgroup.event_control"),
    "cpu": ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.stat"),
    "cpuacct": ("cpuacct.usage", "cpuacct.stat", "cpuacct.usage_percpu"),
    "cpuset": ("cpuset.cpus", "cpuset.mems"),
    "pids": ("pids.max", "pids.current"),
    "freezer": ("freezer.state",),
}


def fake_tree(root: Path, *levels: str) -> None:
    for controller, files in FILES.items():
        for level in ("", *levels):
            folder = root / controller / level
            folder.mkdir(parents=True, exist_ok=True)
            for name in (*files, "cgroup.procs"):
                (folder / name).touch()
    (root / "cpuset" / "cpuset.cpus").write_text("0-3\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    (root / "unified").mkdir()  # not a v1 controller: ignored


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    fake_tree(tmp_path, "ns", "ns/task")
    return tmp_path


def test_hierarchies_lists_the_controller_folders_once(tree: Path):
    (tree / "cpu,cpuacct").symlink_to(tree / "cpu")
    assert sorted(hierarchies(str(tree))) == ["cpu", "cpuacct", "cpuset", "freezer", "memory", "pids"]


def test_open_cgroup_with_version_1_has_a_folder_per_controller(tree: Path):
    cg = cgroups.open_cgroup("/ns/task", "x", "y", root=str(tree), version=1)
    assert isinstance(cg, V1Cgroup)
    assert cg.dirs["memory"] == str(tree / "memory" / "ns" / "task")
    assert set(cg.dirs) == set(FILES)


def test_create_copies_cpuset_from_the_parent_when_empty(tree: Path):
    V1Cgroup("/ns/task", hierarchies(str(tree))).create()
    for level in ("ns", "ns/task"):
        assert (tree / "cpuset" / level / "cpuset.cpus").read_text() == "0-3"
        assert (tree / "cpuset" / level / "cpuset.mems").read_text() == "0"


def test_create_keeps_a_cpuset_already_set(tree: Path):
    (tree / "cpuset" / "ns" / "task" / "cpuset.cpus").write_text("1\n")
    V1Cgroup("/ns/task", hierarchies(str(tree))).create()
    assert (tree / "cpuset" / "ns" / "task" / "cpuset.cpus").read_text() == "1\n"


def test_create_under_a_file_fails_naming_the_cgroups_path(tree: Path):
    with pytest.raises(InvalidArgument, match=r"^linux.cgroupsPath /ns/task/cgroup.procs/x: cannot create "):
        V1Cgroup("/ns/task/cgroup.procs/x", hierarchies(str(tree)), given="/ns/task/cgroup.procs/x").create()


def test_path_error_classifies_read_only_as_invalid_and_others_as_internal():
    err = base.path_error("/x/y", "create", "/sys/fs/cgroup/memory/x/y", OSError(errno.EROFS, "Read-only file system"))
    assert isinstance(err, InvalidArgument)
    assert str(err) == "linux.cgroupsPath /x/y: cannot create /sys/fs/cgroup/memory/x/y: Read-only file system"
    assert isinstance(base.path_error("/x", "create", "/p", OSError(errno.EIO, "I/O error")), Internal)


def test_apply_writes_each_controller_file(tree: Path):
    cg = V1Cgroup("/ns/task", hierarchies(str(tree)))
    cg.apply(Resources.parse({"memory": {"limit": 1 << 26, "swap": 1 << 27, "reservation": 1 << 20},
                              "cpu": {"shares": 256, "quota": 20000, "period": 100000}, "pids": {"limit": -1}}))
    leaf = lambda c, f: (tree / c / "ns" / "task" / f).read_text()  # noqa: E731
    assert leaf("memory", "memory.limit_in_bytes") == str(1 << 26)
    assert leaf("memory", "memory.memsw.limit_in_bytes") == str(1 << 27)
    assert leaf("memory", "memory.soft_limit_in_bytes") == str(1 << 20)
    assert (leaf("cpu", "cpu.shares"), leaf("cpu", "cpu.cfs_quota_us")) == ("256", "20000")
    assert leaf("pids", "pids.max") == "max"


def test_apply_without_swap_accounting_skips_memsw(tree: Path):
    (tree / "memory" / "ns" / "task" / "memory.memsw.limit_in_bytes").unlink()
    V1Cgroup("/ns/task", hierarchies(str(tree))).apply(Resources.parse({"memory": {"limit": 100, "swap": 200}}))


def test_add_writes_the_pid_in_every_hierarchy(tree: Path):
    V1Cgroup("/ns/task", hierarchies(str(tree))).add(4321)
    for controller in FILES:
        assert (tree / controller / "ns" / "task" / "cgroup.procs").read_text() == "4321"


def test_freeze_waits_until_the_state_reads_back(tree: Path, monkeypatch: pytest.MonkeyPatch):
    cg = V1Cgroup("/ns/task", hierarchies(str(tree)))
    cg.freeze()  # a plain file reads back what was written
    assert (tree / "freezer" / "ns" / "task" / "freezer.state").read_text() == "FROZEN"
    cg.thaw()
    assert (tree / "freezer" / "ns" / "task" / "freezer.state").read_text() == "THAWED"


def test_freeze_without_freezer_hierarchy_is_internal(tree: Path):
    mounts = {k: v for k, v in hierarchies(str(tree)).items() if k != "freezer"}
    with pytest.raises(Internal, match="no freezer hierarchy"):
        V1Cgroup("/ns/task", mounts).freeze()


def test_metrics_parse_memory_cpu_pids_and_oom(tree: Path):
    leaf = lambda c: tree / c / "ns" / "task"  # noqa: E731
    (leaf("memory") / "memory.usage_in_bytes").write_text("7000000\n")
    (leaf("memory") / "memory.max_usage_in_bytes").write_text("9000000\n")
    (leaf("memory") / "memory.limit_in_bytes").write_text("67108864\n")
    (leaf("memory") / "memory.stat").write_text("cache 10\nrss 20\npgfault 5\ntotal_rss 21\ntotal_pgmajfault 2\n"
                                              "hierarchical_memory_limit 67108864\n")
    (leaf("memory") / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (leaf("cpuacct") / "cpuacct.usage").write_text("123456789\n")
    (leaf("cpuacct") / "cpuacct.stat").write_text("user 5\nsystem 3\n")
    (leaf("cpuacct") / "cpuacct.usage_percpu").write_text("100 200 \n")
    (leaf("cpu") / "cpu.stat").write_text("nr_periods 4\nnr_throttled 1\nthrottled_time 99\n")
    (leaf("pids") / "pids.current").write_text("3\n")
    (leaf("pids") / "pids.max").write_text("max\n")
    cg = V1Cgroup("/ns/task", hierarchies(str(tree)))
    m = cg.metrics()
    assert cg.metrics_type == "io.containerd.cgroups.v1.Metrics"
    assert (m.memory.usage.usage, m.memory.usage.max, m.memory.usage.limit) == (7000000, 9000000, 67108864)
    assert (m.memory.cache, m.memory.rss, m.memory.pg_fault) == (10, 20, 5)
    assert (m.memory.total_rss, m.memory.total_pg_maj_fault, m.memory.hierarchical_memory_limit) == (21, 2, 67108864)
    assert m.memory_oom_control.oom_kill == 2 and cg.oom_kills() == 2
    assert (m.cpu.usage.total, m.cpu.usage.user, m.cpu.usage.kernel) == (123456789, 50_000_000, 30_000_000)
    assert list(m.cpu.usage.per_cpu) == [100, 200]
    assert (m.cpu.throttling.periods, m.cpu.throttling.throttled_periods) == (4, 1)
    assert (m.pids.current, m.pids.limit) == (3, 0)


def test_remove_takes_every_leaf_and_leaves_the_namespace_folder(tmp_path: Path):
    fake_tree(tmp_path)
    for controller in FILES:
        (tmp_path / controller / "ns" / "task").mkdir(parents=True)
    cg = V1Cgroup("/ns/task", hierarchies(str(tmp_path)))
    assert cg.exists()
    cg.remove()
    assert not cg.exists()
    assert all((tmp_path / c / "ns").is_dir() for c in FILES)


def test_remove_for_bundle_ignores_specs_without_linux(tmp_path: Path):
    (tmp_path / "config.json").write_text('{"process": {"args": ["/x.wasm"]}}')
    assert cgroups.remove_for_bundle(str(tmp_path), "ns", "id") is False
    assert cgroups.remove_for_bundle(str(tmp_path / "missing"), "ns", "id") is False
