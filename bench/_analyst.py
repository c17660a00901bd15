"""The sink's insert latency while an analyst query runs, on the embedded engine.

chdb runs one statement at a time (a second session on the same folder waits
too), so an analyst query holds the inserts back for as long as it runs; what
bounds the stall is the role's ``max_execution_time``. This measures it: a
baseline of one-row inserts, then the same inserts while an oncall key runs a
query that only its time limit ends.

``python -m bench._analyst [--limit-s 2] [--rows 3000]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agentstream.core.config import ClickHouseSettings, load_settings
from agentstream.core.errors import StorageError
from agentstream.schemas import ToolCall
from agentstream.sinks.analyst import AnalystEngine, LocalAnalyst, Principal
from agentstream.sinks.clickhouse import ClickHouseSink, migrate, open_backend

__all__ = ["AnalystStall", "measure_insert_latency_during_analyst_query"]

_LONG_QUERY = (
    "SELECT count() FROM tool_calls AS a CROSS JOIN tool_calls AS b CROSS JOIN tool_calls AS c "
    "WHERE cityHash64(a.run_id, b.run_id, c.run_id) = 0"
)


@dataclass(frozen=True)
class AnalystStall:
    """Insert latencies (ms) without and during a long analyst query, and its duration (s)."""

    baseline_ms: list[float]
    during_ms: list[float]
    query_s: float
    limit_s: float

    def summary(self) -> str:
        def stats(values: list[float]) -> str:
            return (
                f"p50 {statistics.median(values):8.1f} ms  max {max(values):8.1f} ms  "
                f"(n={len(values)})"
            )

        return (
            f"insert alone:            {stats(self.baseline_ms)}\n"
            f"insert during the query: {stats(self.during_ms)}\n"
            f"analyst query ended by its limit after {self.query_s:.2f} s "
            f"(max_execution_time {self.limit_s:g} s)"
        )


def _call(i: int) -> ToolCall:
    return ToolCall(
        tenant_id="bench",
        user_id="u",
        agent_id="a",
        agent_version="1",
        run_id=f"r{i}",
        event_time=dt.datetime.now(dt.UTC),
        tool="t",
        status="SUCCESS",
        error_class="NONE",
        latency_ms=1.0,
    )


def measure_insert_latency_during_analyst_query(
    workdir: Path, *, rows: int = 3000, limit_s: float = 2.0, inserts: int = 20
) -> AnalystStall:
    settings = load_settings(analyst={"oncall": {"max_execution_time_s": limit_s}})
    backend = open_backend(ClickHouseSettings(path=workdir / "chdb", database="bench_analyst"))
    try:
        migrate(backend, settings)
        sink = ClickHouseSink(backend, settings.sink)
        for i in range(rows):
            sink.add_record(_call(i))
        sink.flush(force=True).raise_for_error()
        columns = tuple(ToolCall.model_fields)

        def insert_once(i: int) -> float:
            started = time.perf_counter()
            call = _call(rows + i)
            backend.insert("tool_calls", columns, [tuple(getattr(call, c) for c in columns)])
            return (time.perf_counter() - started) * 1000

        baseline = [insert_once(i) for i in range(inserts)]
        analyst = LocalAnalyst(
            AnalystEngine(backend, settings.analyst), Principal("bench", "oncall")
        )
        started = threading.Event()
        took: list[float] = []

        def long_query() -> None:
            began = time.perf_counter()
            started.set()
            with contextlib.suppress(StorageError):  # the time limit ends it
                analyst.query(_LONG_QUERY)
            took.append(time.perf_counter() - began)

        thread = threading.Thread(target=long_query)
        thread.start()
        started.wait()
        during = [insert_once(inserts + i) for i in range(inserts)]
        thread.join()
        return AnalystStall(baseline, during, took[0], limit_s)
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._analyst", description=__doc__)
    parser.add_argument("--limit-s", type=float, default=2.0, help="oncall max_execution_time")
    parser.add_argument("--rows", type=int, default=3000, help="rows the long query crosses")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentstream-bench-analyst-") as scratch:
        stall = measure_insert_latency_during_analyst_query(
            Path(scratch), rows=args.rows, limit_s=args.limit_s
        )
    print(stall.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
