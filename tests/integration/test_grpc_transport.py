"""The supervisor over gRPC, without containerd: `start` under a containerd 2.x environment with
WASMVISOR_PROTOCOL=grpc answers the JSON bootstrap of version 3, and the same Task handlers then
answer `/containerd.task.v3.Task/<Method>` over gRPC, errors mapped to gRPC status codes.

(containerd 2.1.x itself drops gRPC shims, so `start` answers it ttrpc: see tests/e2e/test_protocols.py;
a containerd that says 2.2.0 gets gRPC.)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.empty_pb2 import Empty

from tests.e2e.host import is_alive, kill_pids, process_tree
from tests.integration.harness import HELLO, SHIM, Harness, ended
from wasmvisor.proto.containerd.runtime.sandbox.v1 import sandbox_pb2 as sb
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.supervisor.shim import claim

V3 = "containerd.task.v3.Task"
FAKE_CONTAINERD_2 = "#!/bin/sh\necho 'containerd github.com/containerd/containerd/v2 2.2.0+unknown '\n"


def _start_grpc_shim(h: Harness, bundle: Path, task_id: str) -> dict[str, Any]:
    publish = h.base / "containerd"
    publish.write_text(FAKE_CONTAINERD_2)
    publish.chmod(0o755)
    grpc_address = str(h.base / "containerd.sock")
    env = dict(
        os.environ,
        TTRPC_ADDRESS=h.events_sock,
        WASMVISOR_SOCKET_DIR=str(h.sockets),
        WASMVISOR_PROTOCOL="grpc",
        GRPC_ADDRESS=grpc_address,
        NAMESPACE="itest",
        MAX_SHIM_VERSION="2",
    )
    out = subprocess.run(
        [str(SHIM), "-namespace", "itest", "-address", grpc_address, "-publish-binary", str(publish),
         "-id", task_id, "start"],
        cwd=bundle, env=env, capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


class GrpcTask:
    """A minimal gRPC client of containerd.task.v3.Task, or of another `service` (generic stubs, as
    containerd's are)."""

    def __init__(self, path: str, service: str = V3) -> None:
        self.channel = grpc.insecure_channel("unix:" + path)
        self.service = service

    def call(self, method: str, request: Any, response_type: Any) -> Any:
        stub = self.channel.unary_unary(
            f"/{self.service}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return stub(request, metadata=[("containerd-namespace", "itest")], timeout=20)


def test_grpc_bootstrap_then_hello_runs_over_task_v3(harness: Harness) -> None:
    h = harness
    bundle = h.bundle("ghello", {"hello.wasm": HELLO}, ["/hello.wasm"])
    (bundle / "stdout").touch()

    answer = _start_grpc_shim(h, bundle, "ghello")

    assert answer["version"] == 3 and answer["protocol"] == "grpc", answer
    assert answer["address"].startswith(str(h.sockets)), "a gRPC address is a plain path, no unix://"
    task = GrpcTask(answer["address"])
    # A second `start` of the group would claim it over gRPC too (settled by the Shutdown below).
    assert claim.ask_grpc(answer["address"], "ghello") == claim.GRANTED
    try:
        with pytest.raises(grpc.RpcError) as missing:
            task.call("State", pb.StateRequest(id="nope"), pb.StateResponse)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND, missing.value

        req = pb.CreateTaskRequest(id="ghello", bundle=str(bundle), stdout=str(bundle / "stdout"))
        created = task.call("Create", req, pb.CreateTaskResponse)
        assert created.pid > 0
        task.call("Start", pb.StartRequest(id="ghello"), pb.StartResponse)
        waited = task.call("Wait", pb.WaitRequest(id="ghello"), pb.WaitResponse)
        assert waited.exit_status == 0
        assert (bundle / "stdout").read_bytes() == b"hello\n"
        task.call("Delete", pb.DeleteRequest(id="ghello"), pb.DeleteResponse)
    finally:
        try:
            task.call("Shutdown", pb.ShutdownRequest(id="ghello"), Empty)
        except grpc.RpcError:
            pass  # the supervisor may close the connection as it exits
        task.channel.close()


def test_a_sandbox_over_grpc_answers_the_sandbox_api_and_ends_after_its_shutdown(harness: Harness) -> None:
    h = harness
    bundle = h.base / "state" / "io.containerd.sandbox.controller.v1.shim" / "itest" / "gpod"
    (bundle / "rootfs").mkdir(parents=True)
    answer = _start_grpc_shim(h, bundle, "gpod")
    assert (answer["version"], answer["protocol"]) == (3, "grpc"), answer
    sandbox = GrpcTask(answer["address"], service="containerd.runtime.sandbox.v1.Sandbox")
    pid = 0
    try:
        sandbox.call("CreateSandbox", sb.CreateSandboxRequest(sandbox_id="gpod", bundle_path=str(bundle)),
                     sb.CreateSandboxResponse)
        pid = sandbox.call("StartSandbox", sb.StartSandboxRequest(sandbox_id="gpod"), sb.StartSandboxResponse).pid
        sandbox.call("PingSandbox", sb.PingRequest(sandbox_id="gpod"), sb.PingResponse)
        try:
            sandbox.call("ShutdownSandbox", sb.ShutdownSandboxRequest(sandbox_id="gpod"), sb.ShutdownSandboxResponse)
        except grpc.RpcError:
            pass  # the supervisor may close the connection as it exits
        assert ended(pid, answer["address"])
    finally:
        sandbox.channel.close()
        if pid and is_alive(pid):
            kill_pids(process_tree(pid))
