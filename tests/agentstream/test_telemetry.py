"""Exporting spans and pipeline metrics: Prometheus text, OTLP/HTTP to a real receiver."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentstream.core.config import load_settings
from agentstream.core.errors import ConfigError
from agentstream.core.metrics import PipelineMetrics
from agentstream.core.telemetry import configure_telemetry


def test_prometheus_page_lists_the_pipeline_metrics() -> None:
    telemetry = configure_telemetry(load_settings().telemetry, install=False)
    assert telemetry.tracer_provider is None  # spans are off by default
    metrics = PipelineMetrics(telemetry.meter_provider)
    metrics.consumed.add(5, {"stage": "sink", "topic": "agent.tool_calls"})
    metrics.record_lag("g", {("agent.tool_calls", 2): 17})
    metrics.sink_batch.record(0.02, {"table": "tool_calls", "outcome": "ok"})
    page = telemetry.metrics_page()
    telemetry.shutdown()
    assert page is not None
    text = page.decode()
    [consumed] = [
        line for line in text.splitlines() if line.startswith("agentstream_events_consumed")
    ]
    assert 'stage="sink"' in consumed
    assert 'topic="agent.tool_calls"' in consumed
    assert consumed.endswith("} 5.0")
    assert 'partition="2"' in text
    assert "} 17.0" in text
    assert "agentstream_sink_batch_duration_seconds_count" in text


def test_no_page_when_metrics_go_elsewhere() -> None:
    telemetry = configure_telemetry(load_settings(telemetry={"metrics": "none"}).telemetry)
    assert telemetry.meter_provider is None
    assert telemetry.metrics_page() is None


class _Receiver:
    """A minimal OTLP/HTTP collector: keeps each request body by path."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        self.headers: list[dict[str, str]] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                received.bodies.setdefault(self.path, []).append(body)
                received.headers.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    receiver = _Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_otlp_carries_spans_and_metrics_to_the_collector(receiver: _Receiver) -> None:
    settings = load_settings(
        telemetry={
            "exporter": "otlp",
            "otlp_endpoint": receiver.url + "/",
            "otlp_headers": "x-api-key=k1",
            "service_name": "worker-7",
        }
    ).telemetry
    assert settings.metrics_exporter == "otlp"  # auto follows the endpoint
    telemetry = configure_telemetry(settings, install=False)
    metrics = PipelineMetrics(telemetry.meter_provider)
    metrics.produced.add(3, {"stage": "processors", "topic": "agent.rollups"})
    with telemetry.tracer_provider.get_tracer("t").start_as_current_span("process tool_calls"):
        pass
    telemetry.shutdown()  # flushes both

    [metrics_body] = receiver.bodies["/v1/metrics"]
    request = ExportMetricsServiceRequest.FromString(metrics_body)
    resource = request.resource_metrics[0]
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "worker-7"
    found = {m.name: m for scope in resource.scope_metrics for m in scope.metrics if m.name}
    produced = found["agentstream.events.produced"].sum.data_points
    assert [p.as_int for p in produced] == [3]

    [trace_body] = receiver.bodies["/v1/traces"]
    spans = ExportTraceServiceRequest.FromString(trace_body).resource_spans[0]
    assert [s.name for s in spans.scope_spans[0].spans] == ["process tool_calls"]
    assert all(h.get("x-api-key") == "k1" for h in receiver.headers)


def test_otlp_without_an_endpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        load_settings(telemetry={"metrics": "otlp"})
    settings = load_settings(
        telemetry={"otlp_endpoint": "http://x", "otlp_headers": "no-equals-sign"}
    ).telemetry
    with pytest.raises(ConfigError, match="OTLP_HEADERS"):
        configure_telemetry(settings, install=False)


def test_console_prints_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(telemetry={"metrics": "console"}).telemetry
    telemetry = configure_telemetry(settings, install=False)
    PipelineMetrics(telemetry.meter_provider).invalid.add(
        1, {"stage": "processors", "topic": "agent.transitions", "error_type": "CodecError"}
    )
    telemetry.shutdown()
    out = capsys.readouterr().out
    assert "agentstream.events.invalid" in out
    assert "CodecError" in out
