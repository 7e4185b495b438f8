"""Random and mutated ttrpc frames and protobuf payloads thrown at a live supervisor: it answers or
drops each connection, never dies, and serves a normal task afterwards."""

from __future__ import annotations

import os
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.harness import HELLO, TASK, Harness
from tests.integration.test_faults import SLEEPER, run_hello
from wasmvisor.proto import ttrpc_pb2
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb
from wasmvisor.supervisor.rpc.ttrpc import HEADER

METHODS = ["Create", "Start", "Delete", "State", "Wait", "Kill", "Pids", "CloseIO", "Connect", "Stats",
           "Exec", "Pause", "Resume", "Checkpoint", "ResizePty", "Update", "Shutdown", "NoSuchMethod"]
VALID = [
    pb.CreateTaskRequest(id="fuzz", bundle="/nonexistent-fuzz-bundle", stdout="/dev/null").SerializeToString(),
    pb.StartRequest(id="fuzz").SerializeToString(),
    pb.KillRequest(id="fuzz", signal=9, all=True).SerializeToString(),
    pb.StateRequest(id="fuzz", exec_id="e").SerializeToString(),
    pb.DeleteRequest(id="fuzz").SerializeToString(),
]


def frame(stream: int, mtype: int, flags: int, data: bytes) -> bytes:
    return HEADER.pack(len(data), stream, mtype, flags) + data


def mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in flips:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


requests = st.builds(
    lambda method, payload, timeout, service: ttrpc_pb2.Request(
        service=service, method=method, payload=payload, timeout_nano=timeout).SerializeToString(),
    st.sampled_from(METHODS),
    st.one_of(st.binary(max_size=256), st.sampled_from(VALID),
              st.builds(mutate, st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)),
                                                                 max_size=4))),
    st.integers(0, 2**63 - 1),
    st.sampled_from([TASK, "containerd.task.v3.Task", "nope.Service", ""]),
)
frames = st.one_of(
    st.binary(min_size=1, max_size=512),  # noise
    st.builds(frame, st.integers(0, 2**32 - 1), st.just(1), st.integers(0, 255), requests),
    st.builds(lambda f, flips: mutate(f, flips),
              st.builds(frame, st.integers(1, 99), st.just(1), st.just(0), requests),
              st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=6)),
    st.builds(frame, st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=128)),
)


def test_supervisor_survives_random_and_mutated_frames(harness: Harness) -> None:
    h = harness
    bundle, c = harness_pod(h)
    path = h.addresses[0].removeprefix("unix://")

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(frames, min_size=1, max_size=4))
    def throw(chunks: list[bytes]) -> None:
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(0.2)
            raw.connect(path)
            try:
                for chunk in chunks:
                    raw.sendall(chunk)
                raw.recv(65536)  # an answer, EOF or nothing: all fine, as long as it stays up
            except (TimeoutError, ConnectionError, OSError):
                pass
        # after each throw, the task created before the storm still runs
        anchor = h.call(c, "State", pb.StateRequest(id="anchor"), pb.StateResponse)
        assert anchor.status == types_pb.RUNNING, chunks

    throw()
    # Still serving, a new task too (a fuzzed Shutdown was ignored: a task remained).
    assert os.path.exists(path)
    run_hello(h, c, "after-fuzz")


def harness_pod(h: Harness):  # type: ignore[no-untyped-def]
    from tests.integration.test_task_api import pod_task

    bundle, c = pod_task(h, "anchor", {"s.wasm": SLEEPER, "hello.wasm": HELLO}, ["/s.wasm"])
    h.call(c, "Create", pb.CreateTaskRequest(id="anchor", bundle=str(bundle)), pb.CreateTaskResponse)
    h.call(c, "Start", pb.StartRequest(id="anchor"), pb.StartResponse)
    return bundle, c



