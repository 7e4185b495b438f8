"""The seam for traces: what the supervisor's layers call to make spans, doing nothing unless configured.

`Tracer` is a no-op; when the standard OTLP variables name an endpoint (`configured`), daemon.py makes
the OpenTelemetry one instead (supervisor/otel.py, the only module that imports opentelemetry) and hands
it down. So a supervisor without the variables imports nothing of OpenTelemetry and pays one `if` per
span. Bottom layer: imports nothing of wasmvisor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

Attributes = Mapping[str, str | int | float | bool]


def configured(env: Mapping[str, str]) -> bool:
    """Whether traces are to be exported: an OTLP endpoint is set and neither OTEL_SDK_DISABLED nor
    OTEL_TRACES_EXPORTER=none turns them off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return any(env.get(name) for name in ENDPOINT_VARIABLES)


class Span:
    """What a block may do with its span (an OpenTelemetry span has this method too)."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def __enter__(self) -> Span:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


_NO_SPAN = Span()
"""Its own context manager: the no-op `span` costs one call and no generator."""


class Tracer:
    """No tracing: every span is free. supervisor/otel.py's OtelTracer overrides all three methods."""

    enabled = False

    def span(self, name: str, attributes: Attributes | None = None,
             carrier: Mapping[str, str] | None = None) -> AbstractContextManager[Span]:
        """A span around the block, child of the current one, or of the W3C `traceparent` in `carrier`
        (a request's metadata) when it has one."""
        return _NO_SPAN

    def record(self, name: str, start_ns: int, end_ns: int, attributes: Attributes | None = None) -> None:
        """A span of the past (times in ns since the epoch), child of the current one."""

    def close(self) -> None:
        """Export what is left (at the supervisor's exit)."""


NO_TRACER = Tracer()
