"""`-info`: the RuntimeInfo containerd 2.x reads from the shim's stdout, encoded as containerd's
api/types/introspection.proto lays it out (field numbers checked here), answered as runc's shim answers."""

from __future__ import annotations

import json

import pytest
from google.protobuf.any_pb2 import Any as AnyPb

from wasmvisor.errors import InvalidArgument
from wasmvisor.proto.containerd.types import introspection_pb2 as pb
from wasmvisor.proto.runtimeoptions.v1 import api_pb2 as runtimeoptions
from wasmvisor.supervisor.shim import info
from wasmvisor.version import VERSION
from wasmvisor.worker.features import features

FEATURES = json.dumps(features()).encode()


def test_field_numbers_are_containerds() -> None:
    fields = {f.name: f.number for f in pb.RuntimeInfo.DESCRIPTOR.fields}
    assert fields == {"name": 1, "version": 2, "options": 3, "features": 4, "annotations": 5}
    assert {f.name: f.number for f in pb.RuntimeVersion.DESCRIPTOR.fields} == {"version": 1, "revision": 2}
    assert pb.RuntimeInfo.DESCRIPTOR.full_name == "containerd.types.RuntimeInfo"


def test_without_options_it_names_the_runtime_and_carries_the_features_as_json() -> None:
    data = info.runtime_info("wasmvisor", b"", FEATURES).SerializeToString()
    assert data.startswith(b"\x0a\x1aio.containerd.wasmvisor.v1")  # field 1, 26 bytes
    decoded = pb.RuntimeInfo.FromString(data)
    assert decoded.version.version == VERSION
    assert decoded.version.revision
    assert not decoded.HasField("options")
    assert decoded.features.type_url == "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
    assert json.loads(decoded.features.value)["linux"]["mountExtensions"] == {"idmap": {"enabled": False}}


def test_a_custom_shims_name_becomes_its_runtime_name() -> None:
    assert info.runtime_info("mywasm", b"", None).name == "io.containerd.mywasm.v1"


def test_without_features_they_are_left_out() -> None:
    assert not info.runtime_info("wasmvisor", b"", None).HasField("features")


def test_known_runtime_options_are_echoed() -> None:
    options = AnyPb(type_url="runtimeoptions.v1.Options",
                    value=runtimeoptions.Options(config_path="/etc/wasmvisor.toml").SerializeToString())
    answer = info.runtime_info("wasmvisor", options.SerializeToString(), None)
    assert answer.options == options


def test_options_of_another_runtime_are_refused_with_their_type() -> None:
    options = AnyPb(type_url="io.containerd.kata.v2.Options", value=b"\x0a\x01x")
    with pytest.raises(InvalidArgument, match="io.containerd.kata.v2.Options"):
        info.runtime_info("wasmvisor", options.SerializeToString(), None)


def test_stdin_that_is_not_an_any_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not a protobuf Any"):
        info.read_options(b"\xff\xff\xff")
