"""When traces are exported: the standard OTLP variables decide, and off costs nothing."""

from __future__ import annotations

import pytest

from wasmvisor import tracing


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
])
def test_traces_are_on_only_with_an_endpoint_and_not_disabled(env: dict[str, str], on: bool) -> None:
    assert tracing.configured(env) is on


def test_the_no_op_tracer_gives_a_span_that_takes_attributes() -> None:
    with tracing.NO_TRACER.span("x", {"a": 1}, carrier={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) as s:
        s.set_attribute("b", 2)
    tracing.NO_TRACER.record("y", 1, 2)
    assert tracing.NO_TRACER.enabled is False
