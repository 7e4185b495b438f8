"""containerd 2.3 runs `start` with its BootstrapParams on stdin (no 2.3 build is installable here: the
bytes are built from our .proto, as 2.3 sends them): `start` answers in JSON, and the supervisor it
launched serves at that address."""

from __future__ import annotations

import json

from google.protobuf.any_pb2 import Any

from tests.integration.harness import Harness
from wasmvisor.proto.containerd.runtime.bootstrap.v1 import bootstrap_pb2 as bpb
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.runtimeoptions.v1 import api_pb2


def test_start_answers_containerd_2_3_in_json_and_serves_there(harness: Harness) -> None:
    h = harness
    bundle = h.base / "b23"
    (bundle / "rootfs").mkdir(parents=True)
    options = Any(type_url="runtimeoptions.v1.Options", value=api_pb2.Options(config_path="/x").SerializeToString())
    params = bpb.BootstrapParams(
        instance_id="t23", namespace="itest", log_level=bpb.LOG_LEVEL_INFO, containerd_version="v2.3.0",
        containerd_ttrpc_address=h.events_sock, containerd_grpc_address=str(h.base / "containerd.sock"),
        containerd_binary="/bin/false", extensions=[bpb.Extension(value=options)])
    answer = json.loads(h.start_answer(bundle, "t23", stdin=params.SerializeToString()))
    assert answer["version"] == 2 and answer["protocol"] == "ttrpc"
    assert answer["address"].startswith("unix://" + str(h.sockets) + "/")
    assert json.loads((bundle / "address").read_text()) == answer
    c = h.client(answer["address"])
    assert h.call(c, "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid > 0

