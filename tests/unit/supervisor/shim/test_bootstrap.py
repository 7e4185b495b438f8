"""What `start` answers each containerd line (supervisor/shim/bootstrap.py): pure choices, plus the
`<publish-binary> --version` probe and its cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wasmvisor.errors import InvalidArgument
from wasmvisor.supervisor.shim import bootstrap
from wasmvisor.supervisor.shim.bootstrap import PLAIN, Bootstrap

ENV_17 = {"GRPC_ADDRESS": "/run/containerd/containerd.sock", "NAMESPACE": "default", "MAX_SHIM_VERSION": "2"}


def test_plain_answer_is_a_unix_url() -> None:
    assert PLAIN.answer("/run/containerd/s/abc") == "unix:///run/containerd/s/abc"


def test_grpc_answer_is_json_v3_with_a_plain_path() -> None:
    answer = json.loads(Bootstrap("grpc", 3).answer("/run/containerd/s/abc"))
    assert answer == {"version": 3, "address": "/run/containerd/s/abc", "protocol": "grpc"}


def test_ttrpc_v3_answer_keeps_the_unix_scheme() -> None:
    answer = json.loads(Bootstrap("ttrpc", 3).answer("/run/containerd/s/abc"))
    assert answer == {"version": 3, "address": "unix:///run/containerd/s/abc", "protocol": "ttrpc"}


@pytest.mark.parametrize(
    ("requested", "major", "expected"),
    [
        ("ttrpc", 2, PLAIN),
        ("grpc", 1, PLAIN),
        ("grpc", None, PLAIN),
        ("ttrpc-v3", 1, PLAIN),
        ("grpc", 2, Bootstrap("grpc", 3)),
        ("ttrpc-v3", 2, Bootstrap("ttrpc", 3)),
    ],
)
def test_json_goes_only_to_containerd_2(requested: str, major: int | None, expected: Bootstrap) -> None:
    assert bootstrap.choose(requested, major) == expected


def test_protocol_comes_from_the_environment_and_defaults_to_ttrpc() -> None:
    assert bootstrap.requested_protocol({}) == "ttrpc"
    assert bootstrap.requested_protocol({"WASMVISOR_PROTOCOL": "GRPC"}) == "grpc"
    with pytest.raises(InvalidArgument, match="WASMVISOR_PROTOCOL=http"):
        bootstrap.requested_protocol({"WASMVISOR_PROTOCOL": "http"})


def test_versions_parse_from_containerd_version_lines() -> None:
    assert bootstrap.parse_version("containerd github.com/containerd/containerd/v2 2.1.9+unknown ") == (2, 1, 9)
    assert bootstrap.parse_version("containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6") == (1, 7, 24)
    assert bootstrap.parse_version("garbage") is None


def test_containerd_1_6_is_known_by_its_environment_without_running_anything(tmp_path: Path) -> None:
    assert bootstrap.containerd_version({}, "/nonexistent/containerd", str(tmp_path)) == (1, 6, 0)


def test_version_probe_runs_the_publish_binary_once_and_caches(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    binary = tmp_path / "containerd"
    binary.write_text(f"#!/bin/sh\necho x >> {counter}\necho 'containerd x/v2 2.1.9+unknown'\n")
    binary.chmod(0o755)
    cache = tmp_path / "cache"
    cache.mkdir()

    first = bootstrap.containerd_version(ENV_17, str(binary), str(cache))
    second = bootstrap.containerd_version(ENV_17, str(binary), str(cache))

    assert first == second == (2, 1, 9)
    assert counter.read_text().count("x") == 1


def test_an_unrunnable_publish_binary_means_unknown(tmp_path: Path) -> None:
    assert bootstrap.containerd_version(ENV_17, str(tmp_path / "missing"), str(tmp_path)) is None


@pytest.mark.parametrize(
    ("requested", "version", "protocol", "warned"),
    [
        ("grpc", (2, 1, 9), "ttrpc-v3", True),
        ("grpc", (2, 1, 0), "ttrpc-v3", True),
        ("grpc", (2, 2, 0), "grpc", False),
        ("grpc", (2, 3, 1), "grpc", False),
        ("grpc", (2, 0, 5), "grpc", False),
        ("grpc", None, "grpc", False),
        ("ttrpc-v3", (2, 1, 9), "ttrpc-v3", False),
    ],
)
def test_grpc_on_containerd_2_1_is_answered_with_ttrpc_v3_and_a_warning(
    requested: str, version: tuple[int, int, int] | None, protocol: str, warned: bool
) -> None:
    chosen, warning = bootstrap.avoid_known_bugs(requested, version)
    assert chosen == protocol
    assert (warning is not None) == warned
    if warning:
        assert "WASMVISOR_PROTOCOL=grpc on containerd 2.1." in warning and "still idle gRPC connection" in warning


def test_containerd_version_is_exact_from_the_publish_binary(tmp_path: Path) -> None:
    binary = tmp_path / "containerd"
    binary.write_text("#!/bin/sh\necho 'containerd x/v2 2.1.9+unknown'\n")
    binary.chmod(0o755)
    assert bootstrap.containerd_version(ENV_17, str(binary), str(tmp_path)) == (2, 1, 9)
    assert bootstrap.containerd_version({}, str(binary), str(tmp_path)) == (1, 6, 0)
