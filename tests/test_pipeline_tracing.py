"""One agent run is one trace: producer span → processor span → sink span, across the broker."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentstream import Emitter, run_context
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.sinks.clickhouse import ClickHouseBackend
from agentstream.sinks.consumer import SinkWorker
from tests.support.engine import engine_settings, run_engine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # another test module installed one already
        current.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        trace.set_tracer_provider(provider)
    return exporter


def test_one_run_is_one_trace(
    kafka_broker: BrokerHandle,
    clickhouse: ClickHouseBackend,
    spans: InMemorySpanExporter,
    tmp_path: Any,
) -> None:
    settings = engine_settings(kafka_broker, emitter={"spool_dir": tmp_path / "spool"})
    tracer = trace.get_tracer("agent")
    emitter = Emitter(settings, replay_on_start=False)
    with (
        tracer.start_as_current_span("agent run") as root,
        run_context(tenant_id="acme", agent_id="planner", agent_version="1.0") as ctx,
    ):
        emitter.transition("INIT")
        emitter.transition("PREPARING")
        emitter.transition("EXECUTING")
        with emitter.tool_call("search") as call:
            call.result_summary = "3 hits"
        emitter.transition("REVIEWING")
        emitter.transition("COMPLETED")
    assert emitter.flush(30) == 0
    emitter.close()
    trace_id = root.get_span_context().trace_id

    run_engine(settings, lambda e: e.stats.accepted == 5)
    sink = SinkWorker(settings, backend=clickhouse)
    sink.run_until(lambda stats: stats.consumed >= 6, timeout=60)
    sink.close()

    finished = spans.get_finished_spans()
    mine = [s for s in finished if s.context is not None and s.context.trace_id == trace_id]
    names = {s.name for s in mine}
    assert "agent run" in names
    assert {"process transitions", "process tool_calls"} <= names
    assert {"sink lifecycle", "sink tool_calls"} <= names
    # the processor's spans are children of the producer's context, the sink's of theirs
    processor = [s for s in mine if s.name.startswith("process ")]
    assert all(s.parent is not None and s.parent.trace_id == trace_id for s in processor)
    rows = clickhouse.query(
        "SELECT trace_id FROM tool_calls WHERE run_id = {run:String}", {"run": ctx.run_id}
    )
    assert rows.rows == [(f"{trace_id:032x}",)]
