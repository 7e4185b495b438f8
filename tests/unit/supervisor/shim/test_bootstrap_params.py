"""containerd 2.3's BootstrapParams on `start`'s stdin (supervisor/shim/bootstrap_params.py): the bytes
2.3 sends, built from our .proto, are read by hand; a legacy options Any, which parses as
BootstrapParams too, is told apart by its id and namespace; the answer is JSON."""

from __future__ import annotations

import json

import pytest
from google.protobuf.any_pb2 import Any

from wasmvisor.proto.containerd.runtime.bootstrap.v1 import bootstrap_pb2 as pb
from wasmvisor.proto.runtimeoptions.v1 import api_pb2
from wasmvisor.supervisor.shim import bootstrap_params
from wasmvisor.supervisor.shim.bootstrap import Bootstrap, choose

OPTIONS = Any(type_url="runtimeoptions.v1.Options",
              value=api_pb2.Options(type_url="io.containerd.wasmvisor.v1", config_path="/etc/x.toml")
              .SerializeToString())


def _params(**fields: object) -> bytes:
    base: dict[str, object] = dict(
        instance_id="pod-1", namespace="k8s.io", log_level=pb.LOG_LEVEL_DEBUG, containerd_version="v2.3.0",
        containerd_ttrpc_address="/run/containerd/containerd.sock.ttrpc",
        containerd_grpc_address="/run/containerd/containerd.sock", containerd_binary="/usr/bin/containerd",
        extensions=[pb.Extension(value=OPTIONS)], socket_dir="/run/containerd/s")
    base.update(fields)
    return pb.BootstrapParams(**base).SerializeToString()


def test_the_params_of_containerd_2_3_are_read_with_the_options_inside() -> None:
    params = bootstrap_params.parse(_params(), "pod-1", "k8s.io")
    assert params is not None
    assert (params.containerd_version, params.grpc_address, params.ttrpc_address, params.binary, params.socket_dir) \
        == ("v2.3.0", "/run/containerd/containerd.sock", "/run/containerd/containerd.sock.ttrpc",
            "/usr/bin/containerd", "/run/containerd/s")
    assert params.log_level == pb.LOG_LEVEL_DEBUG == -4  # a ten-byte varint on the wire
    assert (params.options_type_url, params.options_value) == (OPTIONS.type_url, OPTIONS.value)


def test_params_without_options_or_optional_fields_are_read() -> None:
    params = bootstrap_params.parse(pb.BootstrapParams(instance_id="t", namespace="default").SerializeToString(),
                                    "t", "default")
    assert params is not None and params.options_type_url == "" and params.socket_dir == ""


def test_a_legacy_options_any_parses_but_is_not_taken_for_params() -> None:
    legacy = OPTIONS.SerializeToString()
    fooled = pb.BootstrapParams.FromString(legacy)  # what a naive reader sees: the type URL as the id
    assert fooled.instance_id == OPTIONS.type_url
    assert bootstrap_params.parse(legacy, "pod-1", "k8s.io") is None


@pytest.mark.parametrize("stdin", [b"", b"\xff\xff\xff", b"\x0a\x05ab"])
def test_empty_or_garbled_stdin_is_no_params(stdin: bytes) -> None:
    assert bootstrap_params.parse(stdin, "pod-1", "k8s.io") is None


def test_params_for_another_id_or_namespace_are_not_ours() -> None:
    assert bootstrap_params.parse(_params(), "pod-2", "k8s.io") is None
    assert bootstrap_params.parse(_params(), "pod-1", "default") is None


@pytest.mark.parametrize("path", ["/run/containerd/s/abc", '/tmp/odd "dir"\\x/s'])
def test_the_json_answer_reads_as_json(path: str) -> None:
    assert json.loads(bootstrap_params.json_answer(2, "unix://" + path, "ttrpc")) == \
        {"version": 2, "address": "unix://" + path, "protocol": "ttrpc"}


def test_containerd_2_3_gets_json_even_for_the_plain_protocol() -> None:
    assert json.loads(choose("ttrpc", 2, json_form=True).answer("/s/a")) == \
        {"version": 2, "address": "unix:///s/a", "protocol": "ttrpc"}
    assert choose("grpc", 2, json_form=True) == Bootstrap("grpc", 3, json_form=True)
