"""Sink throughput: rows/s through :class:`ClickHouseSink` next to a raw insert of the same rows.

``make bench`` calls :func:`bench_sink` and prints :meth:`SinkBench.summary`.
Three figures, same rows, same table, same engine, same run:

* ``raw``: the row tuples inserted straight through the backend in batches of
  ``batch_size`` (the floor: TabSeparated encoding + the engine's insert);
* ``sink``: contract models through ``ClickHouseSink.add_record`` + ``flush``
  (row building, redaction, batching, dedup tokens);
* ``pipeline``: encoded Avro bytes decoded and validated with the schemas codec,
  then the sink: what the worker does per record, minus Kafka.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentstream.core.config import Settings, load_settings
from agentstream.schemas import CallStatus, ErrorClass, ToolCall, decode_model, encode_model
from agentstream.sinks._base import Position
from agentstream.sinks.clickhouse import (
    TABLES,
    ClickHouseBackend,
    ClickHouseSink,
    migrate,
    open_backend,
)

__all__ = ["SinkBench", "bench_sink"]


@dataclass(frozen=True)
class SinkBench:
    """Rows per second of each way in (see the module doc)."""

    rows: int
    batch_size: int
    raw_rows_per_s: float
    sink_rows_per_s: float
    pipeline_rows_per_s: float

    def summary(self) -> str:
        """One line per figure, with the ratio to the raw insert."""
        lines = [f"sink bench: {self.rows} tool calls, batch size {self.batch_size}"]
        for name, value in (
            ("raw chdb insert", self.raw_rows_per_s),
            ("ClickHouseSink", self.sink_rows_per_s),
            ("decode + sink", self.pipeline_rows_per_s),
        ):
            lines.append(
                f"  {name:<16} {value:>12,.0f} rows/s  ({value / self.raw_rows_per_s:.2f}x raw)"
            )
        return "\n".join(lines)


def _calls(count: int) -> list[ToolCall]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    return [
        ToolCall(
            tenant_id=f"tenant-{i % 20}",
            user_id=f"user-{i % 1000}",
            agent_id=f"agent-{i % 5}",
            agent_version=f"1.{i % 3}",
            run_id=f"run-{i // 10}",
            event_time=start + dt.timedelta(microseconds=i * 37),
            tool=f"tool-{i % 12}",
            status=CallStatus.SUCCESS if i % 10 else CallStatus.ERROR,
            error_class=ErrorClass.NONE if i % 10 else ErrorClass.RETRYABLE,
            latency_ms=float(i % 5000) / 3,
            params='{"query": "find the nearest store", "limit": 10}',
            result_summary="3 results",
        )
        for i in range(count)
    ]


def _timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def bench_sink(
    rows: int = 100_000,
    *,
    settings: Settings | None = None,
    backend: ClickHouseBackend | None = None,
) -> SinkBench:
    """Measure the three ways in; an embedded engine in a temporary folder unless given one."""
    chosen = settings or load_settings()
    batch = chosen.sink.batch_size
    folder: Path | None = None
    if backend is None:
        folder = Path(tempfile.mkdtemp(prefix="agentstream-bench-"))
        clickhouse = chosen.clickhouse.model_copy(
            update={"backend": "embedded", "path": folder, "database": "bench"}
        )
        backend = open_backend(clickhouse)
    owned = folder is not None
    try:
        migrate(backend, chosen)
        spec = TABLES["tool_calls"]
        calls = _calls(rows)
        build = spec.row_builder()
        tuples = [build(call) for call in calls]
        encoded = [encode_model(call) for call in calls]

        def reset() -> None:
            backend.command("TRUNCATE TABLE tool_calls")

        def raw() -> None:
            for i in range(0, rows, batch):
                backend.insert(spec.name, spec.columns, tuples[i : i + batch])

        def through_sink() -> None:
            sink = ClickHouseSink(backend, chosen.sink)
            for n, call in enumerate(calls):
                sink.add_record(call, Position("bench", 0, n))
                if sink.due():
                    sink.flush().raise_for_error()
            sink.flush(force=True).raise_for_error()

        def pipeline() -> None:
            sink = ClickHouseSink(backend, chosen.sink)
            for n, data in enumerate(encoded):
                record = decode_model(data, ToolCall)
                sink.add_record(record, Position("bench", 1, n), raw=data)
                if sink.due():
                    sink.flush().raise_for_error()
            sink.flush(force=True).raise_for_error()

        figures = []
        for run in (raw, through_sink, pipeline):
            reset()
            seconds = _timed(run)
            figures.append(rows / seconds)
        return SinkBench(rows, batch, *figures)
    finally:
        if owned:
            backend.command("DROP DATABASE IF EXISTS bench")
            backend.close()
            shutil.rmtree(folder or "", ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - manual runs
    print(bench_sink().summary())
