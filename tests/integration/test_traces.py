"""OpenTelemetry traces of a real supervisor, received by our own OTLP receiver on 127.0.0.1: a span per
Task API call joined to the `traceparent` of the request's metadata (as containerd 2.x sends it), the
worker's phases under Create and Start, and nothing of OpenTelemetry imported when it is not configured."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator

import pytest

from tests.integration.harness import HELLO, TASK, Harness, running_harness
from tests.integration.test_task_api import create
from tests.otlp_receiver import OtlpReceiver
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.supervisor import admin

POD = {"io.kubernetes.cri.sandbox-id": "tracedpod"}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def test_task_calls_and_worker_phases_are_spans_under_containerds_trace(receiver: OtlpReceiver) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    metadata = {"containerd-namespace-ttrpc": "itest", "traceparent": f"00-{trace_id}-{parent_id}-01"}
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "wasmvisor-itest",
           "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with running_harness("wvtrace-") as h:
        bundle = h.bundle("traced", {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=POD)
        address = h.start_shim(bundle, "traced", env_extra=env)
        c = h.client(address)
        (bundle / "stdout").touch()
        for method, req, answer in (
            ("Create", pb.CreateTaskRequest(id="traced", bundle=str(bundle), stdout=str(bundle / "stdout")),
             pb.CreateTaskResponse),
            ("Start", pb.StartRequest(id="traced"), pb.StartResponse),
            ("Wait", pb.WaitRequest(id="traced"), pb.WaitResponse),
        ):
            h.run(c.call(TASK, method, req, answer, metadata=metadata))
        assert h.run(admin.ask(address.removeprefix("unix://")))["opentelemetry_loaded"] is True

        spans = receiver.wait_for({f"{TASK}/Create", f"{TASK}/Start", f"{TASK}/Wait", "worker/fork",
                                   "worker/configure", "worker/container", "worker/module", "worker/seal",
                                   "worker/instantiate", "worker/run", "worker/exit"})

    [created], [started] = spans[f"{TASK}/Create"], spans[f"{TASK}/Start"]
    for call in (created, started, spans[f"{TASK}/Wait"][0]):
        assert (call.trace_id, call.parent_id) == (trace_id, parent_id), call
    digest = "sha256:" + hashlib.sha256(HELLO).hexdigest()
    assert created.attributes == {
        "rpc.system": "ttrpc", "rpc.service": TASK, "rpc.method": "Create", "wasmvisor.task.id": "traced",
        "wasmvisor.namespace": "itest", "wasmvisor.pod": "tracedpod", "wasmvisor.module.path": "/hello.wasm",
        "wasmvisor.module.digest": digest,
    }
    assert created.resource["service.name"] == "wasmvisor-itest"
    for phase, parent in (("fork", created), ("configure", created), ("container", created), ("module", created),
                          ("seal", created), ("instantiate", started), ("run", started), ("exit", started)):
        [span] = spans[f"worker/{phase}"]
        assert (span.trace_id, span.parent_id) == (trace_id, parent.span_id), phase
        assert span.attributes["wasmvisor.task.id"] == "traced" and span.attributes["wasmvisor.module.digest"] == digest
        assert span.start_ns <= span.end_ns
    order = [spans[f"worker/{p}"][0].start_ns for p in ("fork", "configure", "container", "module", "seal")]
    assert order == sorted(order)
    assert spans["worker/exit"][0].attributes["exit.status"] == 0


def test_a_supervisor_without_the_otlp_variables_imports_nothing_of_opentelemetry(harness: Harness) -> None:
    bundle = harness.bundle("plain", {"hello.wasm": HELLO}, ["/hello.wasm"])
    address = harness.start_shim(bundle, "plain")
    create(harness, harness.client(address), "plain", bundle)

    assert harness.run(admin.ask(address.removeprefix("unix://")))["opentelemetry_loaded"] is False
