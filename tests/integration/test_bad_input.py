"""Bad input of every kind gets a status code and a message naming the problem, and the supervisor
(with a task of the same pod running beside it) keeps working."""

from __future__ import annotations

import signal

from google.protobuf import any_pb2
from google.protobuf.empty_pb2 import Empty

from tests.integration.harness import HELLO, Harness, wat
from tests.integration.test_faults import SLEEPER, run_hello, start_sleeper
from tests.integration.test_task_api import POD, create, expect_error, pod_task
from wasmvisor.errors import Code
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.proto.containerd.types.task import task_pb2 as types_pb

UNKNOWN_IMPORT = wat("""
(module
  (import "env" "launch_missiles" (func (param i32)))
  (func (export "_start")))
""")
TRAPS_IN_START_FUNCTION = wat("""
(module
  (func $init unreachable)
  (start $init)
  (func (export "_start")))
""")


def test_bad_bundles_and_modules_are_refused_by_name_while_a_neighbour_runs(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "neighbour", {"s.wasm": SLEEPER}, ["/s.wasm"])
    create(h, c, "neighbour", bundle)
    h.call(c, "Start", pb.StartRequest(id="neighbour"), pb.StartResponse)

    missing = h.bundle("no-config", {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=POD)
    (missing / "config.json").unlink()
    malformed = h.bundle("bad-config", {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=POD)
    (malformed / "config.json").write_text('{"process": {"args": [')
    cases = {
        "no-config": (missing, Code.INVALID_ARGUMENT, "config.json"),
        "bad-config": (malformed, Code.INVALID_ARGUMENT, "config.json"),
        "no-entry": (h.bundle("no-entry", {"hello.wasm": HELLO}, ["/gone.wasm"], annotations=POD),
                     Code.INVALID_ARGUMENT, "/gone.wasm"),
        "unknown-import": (h.bundle("unknown-import", {"u.wasm": UNKNOWN_IMPORT}, ["/u.wasm"], annotations=POD),
                           Code.INVALID_ARGUMENT, "launch_missiles"),
        "big-args": (h.bundle("big-args", {"hello.wasm": HELLO}, ["/hello.wasm", "x" * (2 << 20)],
                              annotations=POD), Code.INVALID_ARGUMENT, "args"),
        "big-env": (h.bundle("big-env", {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=POD,
                             env=[f"V{i}={'y' * 1024}" for i in range(4096)]), Code.INVALID_ARGUMENT, "env"),
    }
    for task_id, (b, code, text) in cases.items():
        err = expect_error(h, c, "Create", pb.CreateTaskRequest(id=task_id, bundle=str(b)), code)
        assert text in err.message, (task_id, err.message)
        expect_error(h, c, "State", pb.StateRequest(id=task_id), Code.NOT_FOUND)

    state = h.call(c, "State", pb.StateRequest(id="neighbour"), pb.StateResponse)
    assert state.status == types_pb.RUNNING
    run_hello(h, c, "still-serving")
    h.call(c, "Kill", pb.KillRequest(id="neighbour", signal=signal.SIGKILL), Empty)
    assert h.call(c, "Wait", pb.WaitRequest(id="neighbour"), pb.WaitResponse).exit_status == 137


def test_module_trapping_in_its_start_function_fails_its_task_alone(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "trap-init", {"t.wasm": TRAPS_IN_START_FUNCTION}, ["/t.wasm"])
    start_sleeper(h, c, "beside")
    # Instantiation happens when the guest starts (Create only compiles and links): the trap
    # ends the task as any trap does, with 137.
    create(h, c, "trap-init", bundle)
    h.call(c, "Start", pb.StartRequest(id="trap-init"), pb.StartResponse)
    assert h.call(c, "Wait", pb.WaitRequest(id="trap-init"), pb.WaitResponse).exit_status == 137
    h.call(c, "Delete", pb.DeleteRequest(id="trap-init"), pb.DeleteResponse)
    assert h.call(c, "State", pb.StateRequest(id="beside"), pb.StateResponse).status == types_pb.RUNNING
    run_hello(h, c, "after-trap")


def test_bad_requests_name_the_field_at_fault(harness: Harness) -> None:
    h = harness
    bundle, c = pod_task(h, "ok", {"hello.wasm": HELLO}, ["/hello.wasm"])
    other = h.bundle("opts", {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=POD)
    unknown = any_pb2.Any(type_url="type.googleapis.com/example.v1.NoSuchOptions", value=b"\x08\x01")
    err = expect_error(h, c, "Create", pb.CreateTaskRequest(id="opts", bundle=str(other), options=unknown),
                       Code.INVALID_ARGUMENT, "example.v1.NoSuchOptions")
    assert "options" in err.message
    expect_error(h, c, "Create", pb.CreateTaskRequest(id="opts", bundle=str(other), checkpoint="/tmp/cp"),
                 Code.INVALID_ARGUMENT, "checkpoint")
    create(h, c, "ok", bundle)
    for method, req in [
        ("Start", pb.StartRequest(id="ok", exec_id="e1")),
        ("Kill", pb.KillRequest(id="ok", exec_id="e1", signal=9)),
        ("Wait", pb.WaitRequest(id="ok", exec_id="e1")),
        ("Delete", pb.DeleteRequest(id="ok", exec_id="e1")),
        ("CloseIO", pb.CloseIORequest(id="ok", exec_id="e1")),
        ("ResizePty", pb.ResizePtyRequest(id="ok", exec_id="e1")),
    ]:
        err = expect_error(h, c, method, req, Code.NOT_FOUND, "e1")
        assert "exec" in err.message, (method, err.message)
    run_hello(h, c, "after-bad-requests")
    h.call(c, "Start", pb.StartRequest(id="ok"), pb.StartResponse)
    assert h.call(c, "Wait", pb.WaitRequest(id="ok"), pb.WaitResponse).exit_status == 0
