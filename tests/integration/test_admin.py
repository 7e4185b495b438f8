"""The Admin service beside the Task API (`wasmvisor ps` asks it): what a supervisor says it runs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from pathlib import Path

import pytest
from google.protobuf.empty_pb2 import Empty

from tests.integration.harness import EXIT_WITH, SLEEPER, Harness, wat
from tests.integration.test_task_api import create
from wasmvisor.errors import DeadlineExceeded
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.supervisor import admin
from wasmvisor.supervisor.rpc.grpc_server import GrpcServer

POD = {"io.kubernetes.cri.sandbox-id": "adminpod"}


def test_tasks_lists_each_task_with_state_pid_engine_module_digest_and_exit(harness: Harness) -> None:
    h = harness
    sleeper = h.bundle("sleepy", {"sleep.wasm": SLEEPER}, ["/sleep.wasm"], annotations=POD)
    quitter_module = wat(EXIT_WITH.format(code=7))
    quitter = h.bundle("quits", {"q.wasm": quitter_module}, ["/q.wasm"], annotations=POD)
    address = h.start_shim(sleeper, "sleepy")
    assert h.start_shim(quitter, "quits") == address
    c = h.client(address)
    sleepy_pid = create(h, c, "sleepy", sleeper).pid
    h.call(c, "Start", pb.StartRequest(id="sleepy"), pb.StartResponse)
    create(h, c, "quits", quitter)
    h.call(c, "Start", pb.StartRequest(id="quits"), pb.StartResponse)
    h.call(c, "Wait", pb.WaitRequest(id="quits"), pb.WaitResponse)

    found = h.run(admin.ask(address.removeprefix("unix://")))
    assert (found["namespace"], found["group"], found["engine"]) == ("itest", "adminpod", "wasmtime")
    assert found["pid"] > 0 and found["pid"] != sleepy_pid
    tasks = {t["id"]: t for t in found["tasks"]}
    assert tasks["sleepy"]["state"] == "running" and tasks["sleepy"]["pid"] == sleepy_pid
    assert tasks["sleepy"]["engine"] == "wasmtime" and tasks["sleepy"]["module"] == "/sleep.wasm"
    assert tasks["sleepy"]["digest"] == "sha256:" + hashlib.sha256(SLEEPER).hexdigest()
    assert tasks["sleepy"]["exit_status"] is None
    assert tasks["quits"]["state"] == "stopped" and tasks["quits"]["exit_status"] == 7
    assert tasks["quits"]["digest"] == "sha256:" + hashlib.sha256(quitter_module).hexdigest()
    h.call(c, "Kill", pb.KillRequest(id="sleepy", signal=9), Empty)
    for task_id in ("sleepy", "quits"):
        h.call(c, "Wait", pb.WaitRequest(id=task_id), pb.WaitResponse)
        h.call(c, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)


def test_a_stopped_supervisor_is_reported_after_the_deadline_not_waited_for(harness: Harness) -> None:
    h = harness
    bundle = h.bundle("frozen", {"sleep.wasm": SLEEPER}, ["/sleep.wasm"])
    address = h.start_shim(bundle, "frozen")
    c = h.client(address)
    create(h, c, "frozen", bundle)
    supervisor = h.call(c, "Connect", pb.ConnectRequest(id="frozen"), pb.ConnectResponse).shim_pid
    os.kill(supervisor, signal.SIGSTOP)
    try:
        with pytest.raises(DeadlineExceeded, match="no answer within 0.5 s"):
            h.run(admin.ask(address.removeprefix("unix://"), timeout=0.5))
    finally:
        os.kill(supervisor, signal.SIGCONT)
    h.call(c, "Delete", pb.DeleteRequest(id="frozen"), pb.DeleteResponse)


def test_a_supervisor_serving_grpc_is_asked_over_grpc(tmp_path: Path) -> None:
    # The Admin service sits beside the Task API on the gRPC server too (WASMVISOR_PROTOCOL=grpc on 2.x).
    async def describe() -> dict[str, object]:
        return {"group": "g", "tasks": []}

    async def scenario() -> dict[str, object]:
        server = GrpcServer([admin.service(describe)])
        await server.start(str(tmp_path / "g.sock"))
        try:
            return await admin.ask(str(tmp_path / "g.sock"))
        finally:
            await server.close()

    assert asyncio.run(scenario()) == {"group": "g", "tasks": []}
