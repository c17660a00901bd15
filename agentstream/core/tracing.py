"""OpenTelemetry across the pipeline: producer → Kafka headers → processor → sink.

The W3C ``traceparent`` travels in each Kafka message's headers. A stage that
consumes a message opens its span as a child of that context
(:func:`consumer_span`) and stamps its own context on what it produces
(:func:`trace_headers`), so one agent run is one trace across processes.

Only ``opentelemetry-api`` is needed here (the thin SDK's dependency); the
exporters are set up by :func:`agentstream.core.telemetry.configure_telemetry` in
the worker (the worker extra brings ``opentelemetry-sdk``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "TRACEPARENT",
    "consumer_span",
    "context_from_headers",
    "trace_headers",
]

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()

#: Kafka headers as confluent-kafka and aiokafka hand them over
Headers = Sequence[tuple[str, bytes | str | None]] | None


def _carrier(headers: Headers) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for name, value in headers or ():
        if name in (TRACEPARENT, "tracestate") and value is not None:
            carrier[name] = value.decode("latin-1") if isinstance(value, bytes) else value
    return carrier


def context_from_headers(headers: Headers) -> otel_context.Context:
    """The trace context carried by a message's headers (empty when there is none)."""
    return _PROPAGATOR.extract(_carrier(headers))


def trace_headers(ctx: otel_context.Context | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers carrying the current (or given) span's context; empty without a span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return [(name, value.encode("latin-1")) for name, value in carrier.items()]


@contextmanager
def consumer_span(
    name: str,
    headers: Headers,
    *,
    tracer: trace.Tracer | None = None,
    attributes: dict[str, Any] | None = None,
) -> Iterator[trace.Span]:
    """A CONSUMER span, child of the context in ``headers``, current for the block."""
    active_tracer = tracer or trace.get_tracer("agentstream")
    with active_tracer.start_as_current_span(
        name,
        context=context_from_headers(headers),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span
