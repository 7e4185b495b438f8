"""The OpenTelemetry tracer (the `otel` extra): spans exported over OTLP (http/protobuf) in batches.

Imported by daemon.py only when tracing.configured() says the environment asks for traces. The SDK
reads the standard variables itself: OTEL_EXPORTER_OTLP_ENDPOINT / ..._TRACES_ENDPOINT and the
exporter's headers and timeouts, OTEL_SERVICE_NAME (default here, and instead of the
`containerd` that containerd 2.x passes down: `wasmvisor-shim`), OTEL_TRACES_SAMPLER
and its argument, OTEL_BSP_* for the batches, OTEL_PROPAGATORS (default: W3C trace context, as
containerd 2.x sends it in the ttrpc metadata).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from wasmvisor import errors, tracing
from wasmvisor.version import VERSION

DEFAULT_SERVICE_NAME = "wasmvisor-shim"
CLOSE_SECONDS = 3.0
"""How long the supervisor's exit waits for the last spans to be exported."""
INHERITED_SERVICE_NAMES = ("", "containerd")
"""containerd 2.x exports its own spans as `containerd` and its shims inherit that variable: taken as unset,
so that our spans are not shown as containerd's (the Go runc shim names itself too)."""


class OtelTracer(tracing.Tracer):
    enabled = True

    def __init__(self, resource: tracing.Attributes) -> None:
        attributes = {"service.version": VERSION, **resource}
        if os.environ.get("OTEL_SERVICE_NAME", "") in INHERITED_SERVICE_NAMES:
            attributes["service.name"] = DEFAULT_SERVICE_NAME
        # No exit hook of the SDK's own: close() bounds the last flush, an unreachable collector
        # must not hold the supervisor's exit for the exporter's retries.
        self._provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
        try:
            self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        except Exception as exc:  # a malformed endpoint, header or timeout variable
            raise errors.InvalidArgument(f"OTLP exporter: {exc}") from exc
        self._tracer = self._provider.get_tracer("wasmvisor", VERSION)

    @contextlib.contextmanager
    def span(self, name: str, attributes: tracing.Attributes | None = None,
             carrier: Mapping[str, str] | None = None) -> Iterator[Any]:  # an OpenTelemetry span
        context = propagate.extract(carrier) if carrier is not None else None
        kind = SpanKind.SERVER if carrier is not None else SpanKind.INTERNAL
        with self._tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes) as span:
            yield span

    def record(self, name: str, start_ns: int, end_ns: int, attributes: tracing.Attributes | None = None) -> None:
        span = self._tracer.start_span(name, start_time=start_ns, attributes=attributes)
        span.end(end_time=max(start_ns, end_ns))

    def close(self) -> None:
        flush = threading.Thread(target=self._provider.shutdown, name="otel-flush", daemon=True)
        flush.start()
        flush.join(CLOSE_SECONDS)
