"""The demo's live view reads the worker's figures from a real Prometheus page."""

from __future__ import annotations

from agentstream.cli._demo import pipeline_figures
from agentstream.core.config import load_settings
from agentstream.core.metrics import PipelineMetrics
from agentstream.core.telemetry import configure_telemetry


def test_pipeline_figures_from_the_workers_page() -> None:
    telemetry = configure_telemetry(load_settings().telemetry, install=False)
    metrics = PipelineMetrics(telemetry.meter_provider)
    metrics.add_counts(metrics.consumed, "processors", {"agent.tool_calls": 40, "agent.x": 2})
    metrics.add_counts(metrics.consumed, "sink", {"agent.lifecycle": 1000})
    metrics.record_lag("agentstream-processors", {("agent.tool_calls", 0): 5, ("agent.x", 1): 2})
    metrics.record_lag("agentstream-sink", {("agent.tool_calls", 0): 900})
    metrics.sink_rows.add(30, {"table": "tool_calls"})
    metrics.sink_rows.add(12, {"table": "rollups_1s"})
    for seconds in (0.010, 0.030):
        metrics.sink_batch.record(seconds, {"table": "tool_calls", "outcome": "ok"})
    page = telemetry.metrics_page()
    telemetry.shutdown()
    assert page is not None

    figures = pipeline_figures(page.decode())

    assert figures["processed"] == 42
    assert figures["lag"] == 7  # the processors' group only
    assert figures["stored"] == 42
    assert abs(figures["batch_ms"] - 20.0) < 1e-6


def test_an_empty_page_gives_zeros() -> None:
    assert pipeline_figures("") == {"processed": 0, "lag": 0, "stored": 0, "batch_ms": 0}
