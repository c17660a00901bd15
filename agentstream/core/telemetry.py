"""The OpenTelemetry SDK for a worker process: spans and pipeline metrics, exported.

:mod:`agentstream.core.tracing` and :mod:`agentstream.core.metrics` only use the API;
this module (worker extra: ``opentelemetry-sdk`` and its exporters) decides
where the data goes, from :class:`~agentstream.core.config.TelemetrySettings`:

* spans (``exporter``): ``console`` prints them, ``otlp`` posts them to
  ``otlp_endpoint`` + ``/v1/traces`` (OTLP/HTTP, protobuf);
* pipeline metrics (``metrics``): ``otlp`` posts to ``/v1/metrics`` every
  ``metrics_interval_s``; ``prometheus`` keeps them for :meth:`Telemetry.metrics_page`
  (the worker serves it at ``/metrics``); ``console`` prints them; ``auto`` is
  OTLP when ``otlp_endpoint`` is set and Prometheus otherwise.

Call :meth:`Telemetry.shutdown` at exit so the last spans and points are sent.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentstream.core.errors import ConfigError

if TYPE_CHECKING:
    from agentstream.core.config import TelemetrySettings

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Telemetry", "configure_telemetry"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ENV = "AGENTSTREAM_TELEMETRY__"


@dataclass
class Telemetry:
    """What :func:`configure_telemetry` set up (``None`` where nothing is exported)."""

    tracer_provider: Any = None
    meter_provider: Any = None
    #: the Prometheus registry the metrics page is rendered from
    registry: Any = None

    def metrics_page(self) -> bytes | None:
        """The metrics in Prometheus text format, or None when Prometheus is not the target."""
        if self.registry is None:
            return None
        from prometheus_client import generate_latest

        page: bytes = generate_latest(self.registry)
        return page

    def shutdown(self) -> None:
        """Flush and stop the exporters."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                provider.shutdown()


def _headers(settings: TelemetrySettings) -> dict[str, str]:
    if settings.otlp_headers is None:
        return {}
    headers: dict[str, str] = {}
    for item in settings.otlp_headers.get_secret_value().split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{_ENV}OTLP_HEADERS: expected name=value[,name=value], got {item!r}")
        headers[name.strip()] = value.strip()
    return headers


def _otlp_url(settings: TelemetrySettings, signal: str) -> str:
    if not settings.otlp_endpoint:
        raise ConfigError(f"{_ENV}OTLP_ENDPOINT: required to export {signal} over OTLP")
    return f"{settings.otlp_endpoint.rstrip('/')}/v1/{signal}"


def _missing(what: str, package: str, exc: ImportError) -> ConfigError:
    return ConfigError(f"{_ENV}{what}: needs pip install {package}  ({exc})")


def _tracer_provider(settings: TelemetrySettings, resource: Any) -> Any:
    if settings.exporter == "none":
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=resource)
    if settings.exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
        return provider
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise _missing("EXPORTER", "opentelemetry-exporter-otlp-proto-http", exc) from exc
    exporter = OTLPSpanExporter(endpoint=_otlp_url(settings, "traces"), headers=_headers(settings))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _meter_provider(settings: TelemetrySettings, resource: Any) -> tuple[Any, Any]:
    target = settings.metrics_exporter
    if target == "none":
        return None, None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )

    registry = None
    interval_ms = settings.metrics_interval_s * 1000
    if target == "prometheus":
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry
        except ImportError as exc:
            raise _missing("METRICS", "opentelemetry-exporter-prometheus", exc) from exc
        registry = CollectorRegistry(auto_describe=True)
        reader: Any = PrometheusMetricReader(registry=registry)
    else:
        exporter: MetricExporter
        if target == "console":
            exporter = ConsoleMetricExporter(out=sys.stdout)
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                    OTLPMetricExporter,
                )
            except ImportError as exc:
                raise _missing("METRICS", "opentelemetry-exporter-otlp-proto-http", exc) from exc
            exporter = OTLPMetricExporter(
                endpoint=_otlp_url(settings, "metrics"), headers=_headers(settings)
            )
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
    return MeterProvider(resource=resource, metric_readers=[reader]), registry


def configure_telemetry(settings: TelemetrySettings, *, install: bool = True) -> Telemetry:
    """Build the providers ``settings`` ask for; ``install`` makes them the global ones.

    The global providers can be set once per process; tests pass ``install=False``
    and use the returned providers directly.
    """
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": settings.service_name})
    tracer_provider = _tracer_provider(settings, resource)
    meter_provider, registry = _meter_provider(settings, resource)
    if install:
        from opentelemetry import metrics, trace

        if tracer_provider is not None:
            trace.set_tracer_provider(tracer_provider)
        if meter_provider is not None:
            metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider, registry)
