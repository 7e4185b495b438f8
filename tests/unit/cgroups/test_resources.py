import pytest

from wasmvisor.cgroups.resources import Resources, shares_to_weight, v1_writes, v2_swap, v2_writes
from wasmvisor.errors import InvalidArgument

FULL = {
    "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
    "pids": {"limit": 64},
}


def test_v1_writes_every_resource_in_order():
    assert v1_writes(Resources.parse(FULL)) == [
        ("cpuset", "cpuset.cpus", "0-1"),
        ("cpuset", "cpuset.mems", "0"),
        ("memory", "memory.limit_in_bytes", "67108864"),
        ("memory", "memory.memsw.limit_in_bytes", "134217728"),
        ("memory", "memory.soft_limit_in_bytes", "33554432"),
        ("memory", "memory.swappiness", "10"),
        ("cpu", "cpu.shares", "512"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("pids", "pids.max", "64"),
    ]


def test_v2_writes_map_to_the_unified_files():
    assert v2_writes(Resources.parse(FULL)) == [
        ("cpuset.cpus", "0-1"),
        ("cpuset.mems", "0"),
        ("memory.max", "67108864"),
        ("memory.swap.max", "67108864"),
        ("memory.low", "33554432"),
        ("cpu.weight", "20"),
        ("cpu.max", "50000 100000"),
        ("pids.max", "64"),
    ]


def test_unlimited_values_are_max_or_minus_1():
    res = Resources.parse({"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1}, "pids": {"limit": -1}})
    assert ("memory", "memory.limit_in_bytes", "-1") in v1_writes(res)
    assert ("pids", "pids.max", "max") in v1_writes(res)
    assert v2_writes(res) == [("memory.max", "max"), ("memory.swap.max", "max"), ("cpu.max", "max 100000"),
                              ("pids.max", "max")]


def test_quota_without_period_uses_the_default_period_on_v2():
    assert v2_writes(Resources.parse({"cpu": {"quota": 20000}})) == [("cpu.max", "20000 100000")]


@pytest.mark.parametrize("shares, weight", [(0, 0), (2, 1), (1024, 39), (262144, 10000)])
def test_cpu_shares_become_weight_by_runc_formula(shares, weight):
    assert shares_to_weight(shares) == weight


def test_swap_below_limit_is_refused_on_both_versions():
    res = Resources.parse({"memory": {"limit": 100, "swap": 50}})
    with pytest.raises(InvalidArgument, match="below memory.limit"):
        v1_writes(res)
    with pytest.raises(InvalidArgument, match="below memory.limit"):
        v2_writes(res)


def test_v2_swap_needs_a_memory_limit():
    with pytest.raises(InvalidArgument, match="needs a memory.limit"):
        v2_swap(None, 100)
    assert v2_swap(None, None) is None


def test_unified_entries_go_to_v2_only():
    res = Resources.parse({"unified": {"memory.high": "1000000"}})
    assert v2_writes(res) == [("memory.high", "1000000")]
    with pytest.raises(InvalidArgument, match="needs cgroup v2"):
        v1_writes(res)


@pytest.mark.parametrize("doc, problem", [
    ([], "not a JSON object"),
    ({"memory": 5}, "memory: not a JSON object"),
    ({"memory": {"limit": "64M"}}, "memory.limit: '64M' is not an integer"),
    ({"memory": {"limit": True}}, "not an integer"),
    ({"memory": {"swappiness": 101}}, "not within 0..100"),
    ({"cpu": {"cpus": 3}}, "cpu.cpus: 3 is not a string"),
    ({"unified": {"../x": "1"}}, "not a cgroup file name"),
])
def test_bad_resources_name_the_field(doc, problem):
    with pytest.raises(InvalidArgument, match=problem):
        Resources.parse(doc)


def test_empty_resources_write_nothing():
    assert v1_writes(Resources.parse(None)) == [] and v2_writes(Resources.parse({})) == []


def test_merged_keeps_old_values_and_takes_new_ones():
    old = Resources.parse(FULL)
    new = old.merged(Resources.parse({"memory": {"limit": 1 << 30}}))
    assert new.memory_limit == 1 << 30 and new.cpu_shares == 512 and new.pids_limit == 64
