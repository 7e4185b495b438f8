"""`linux.sysctl` and `process.oomScoreAdj` read from the spec (pure): only keys of a namespace the
container has of its own are allowed, as runc's validator allows them."""

from __future__ import annotations

from typing import Any

import pytest

from wasmvisor.errors import InvalidArgument
from wasmvisor.worker.spec_linux import container_layout, parse_namespaces, parse_oom_score_adj, parse_sysctl


def sysctl_of(sysctl: dict[str, Any], namespaces: tuple[str, ...] = ("pid", "network")) -> tuple[tuple[str, str], ...]:
    doc = {"linux": {"sysctl": sysctl, "namespaces": [{"type": t} for t in namespaces]}}
    return parse_sysctl(doc, parse_namespaces(doc))


def test_namespaced_keys_are_kept_in_order_with_slashes_read_as_dots() -> None:
    assert sysctl_of({"kernel.shmmax": "4096", "fs.mqueue.msg_max": "20", "net/ipv4/ip_forward": "1",
                      "kernel.sem": "250 32000 32 128", "kernel.domainname": "example"}) == (
        ("kernel.shmmax", "4096"), ("fs.mqueue.msg_max", "20"), ("net.ipv4.ip_forward", "1"),
        ("kernel.sem", "250 32000 32 128"), ("kernel.domainname", "example"))


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("vm.swappiness", "linux.sysctl vm.swappiness: not in a separate kernel namespace"),
        ("kernel.pid_max", "linux.sysctl kernel.pid_max: not in a separate kernel namespace"),
        ("kernel.hostname", "linux.sysctl kernel.hostname: not allowed: use the spec's hostname"),
        ("net/../../etc", "linux.sysctl 'net/../../etc': not a sysctl name"),
    ],
)
def test_keys_outside_the_containers_namespaces_are_refused_naming_the_key(key: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        sysctl_of({key: "1"})
    assert message in err.value.message


def test_net_keys_need_a_network_namespace() -> None:
    with pytest.raises(InvalidArgument, match="net.ipv4.ip_forward: not allowed without a network namespace"):
        sysctl_of({"net.ipv4.ip_forward": "1"}, namespaces=("pid",))


def test_a_value_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="kernel.shmmax: value must be a string"):
        sysctl_of({"kernel.shmmax": 4096})


def test_the_layout_carries_sysctl_and_oom_score_adj() -> None:
    layout = container_layout({"process": {"oomScoreAdj": -500}, "linux": {"sysctl": {"kernel.msgmax": "9000"}}})
    assert layout.sysctl == (("kernel.msgmax", "9000"),)
    assert layout.oom_score_adj == -500


@pytest.mark.parametrize("value", [1001, -1001, "5", True, 1.5])
def test_oom_score_adj_out_of_range_or_not_a_number_is_refused(value: object) -> None:
    with pytest.raises(InvalidArgument, match="process.oomScoreAdj"):
        parse_oom_score_adj({"process": {"oomScoreAdj": value}})


def test_no_oom_score_adj_is_none() -> None:
    assert parse_oom_score_adj({"process": {}}) is None
    assert parse_oom_score_adj({"process": {"oomScoreAdj": 0}}) == 0

