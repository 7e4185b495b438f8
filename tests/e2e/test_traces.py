"""containerd 2.x with its own tracing on (the OTLP variables in its environment, which its shims inherit):
wasmvisor's spans join containerd's traces through the ttrpc `traceparent`, received by our own OTLP
receiver on 127.0.0.1. 1.6 and 1.7 send no trace context: the test runs on the 2.1 line only."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.conftest import ImageTarball, shim_dir
from tests.e2e.containerd import PrivateContainerd, private_containerd
from tests.e2e.ctr import Ctr
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

TASK = "containerd.task.v2.Task"
OURS = "wasmvisor-shim"


def test_the_shims_spans_join_containerds_trace(
    containerd: PrivateContainerd, images: dict[str, ImageTarball], new_container_id: Callable[[str], str],
) -> None:
    if not containerd.line.startswith("2."):
        pytest.skip(f"containerd {containerd.line} passes no trace context to its shims")
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_TRACES_SAMPLER": "always_on"}
        with private_containerd(shim_dirs=[shim_dir()], binaries=containerd.binaries, line=containerd.line,
                                extra_env=env) as traced:
            ctr = Ctr(traced, "wvtrace")
            ctr.import_image(images["hello"].tar)
            task_id = new_container_id("")
            done = ctr.run_container(images["hello"].ref, task_id)
            assert done.returncode == 0, done.output
            ctr.remove_all()
            spans = receiver.wait_for({f"{TASK}/Create", f"{TASK}/Start", "worker/fork", "worker/run"})

    def one(name: str, service: str) -> ReceivedSpan:
        found = [s for s in spans[name] if s.resource.get("service.name") == service
                 and s.attributes.get("wasmvisor.task.id", task_id) == task_id]
        assert found, f"no span {name} of {service}"
        return found[0]

    for method in ("Create", "Start"):
        ours = one(f"{TASK}/{method}", OURS)
        theirs = one(f"{TASK}/{method}", "containerd")  # the ttrpc client span on containerd's side
        assert (ours.trace_id, ours.parent_id) == (theirs.trace_id, theirs.span_id), method
        assert ours.attributes["wasmvisor.namespace"] == "wvtrace"
    create, start = one(f"{TASK}/Create", OURS), one(f"{TASK}/Start", OURS)
    assert one("worker/fork", OURS).parent_id == create.span_id
    assert one("worker/run", OURS).parent_id == start.span_id
