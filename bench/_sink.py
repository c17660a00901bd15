"""Sink throughput: rows/s through :class:`ClickHouseSink` beside raw inserts of the same rows.

``make bench`` calls :func:`bench_sink` and prints :meth:`SinkBench.summary`.
Same decoded records (tool calls), same table, same engine, same run:

* ``raw``: the records' values inserted by hand, with nothing else, in batches
  of ``batch_size``, in every format the embedded engine takes (the floor of
  each: reading the fields + encoding + the engine's insert):

  - ``TabSeparated`` text (``INSERT ... FORMAT TabSeparated``, the sink's format
    before it went columnar);
  - ``Arrow`` tables read through chdb's ``Python()`` table function;
  - ``ArrowStream`` IPC bytes (``INSERT ... FROM INFILE ... FORMAT ArrowStream``:
    chdb's query text cannot carry binary data, and its streaming insert drops
    constraint errors, so the bytes go through a file);
  - ``Native`` blocks built by clickhouse-connect's chdb client (its own insert path).

* ``sink``: the same records through ``ClickHouseSink.add_record`` (row building,
  the sink's redaction pass over each batch's free-text columns, batching, dedup
  tokens, the ArrowStream insert);
* ``pipeline``: the records' Avro bytes decoded and validated with the codec, their
  event time checked, then the sink: the sink worker's path per record, minus Kafka;
* ``decode only``: the codec alone on the same bytes (the ceiling of the pipeline).

The sink and the pipeline check ``due()`` after every 1,000 records, as the sink
worker does after each ``consume``. Each way runs ``rounds`` times, interleaved,
into an emptied table; the best round counts (the machine is shared).

The bench's own inputs (100,000 records and their bytes, made before any way runs)
are moved out of the garbage collector's sight (``gc.freeze``): a sink worker holds
no such heap, and every collection would otherwise walk it, charging each way for
objects it did not make in proportion to how many it allocates.
"""

from __future__ import annotations

import datetime as dt
import gc
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from agentstream.core.clock_sanity import plausible_event_times
from agentstream.core.config import Settings, load_settings
from agentstream.schemas import CallStatus, ErrorClass, ToolCall, encode_model, utc_now
from agentstream.schemas import decode_model as _decode_model
from agentstream.sinks._base import Position
from agentstream.sinks.clickhouse import TABLES, ClickHouseSink, migrate, open_backend
from agentstream.sinks.clickhouse._tsv import encode_rows

__all__ = ["SinkBench", "bench_sink"]

#: records handed to the sink between two ``due()`` checks (the sink worker's consume size)
_CHUNK = 1_000


@dataclass(frozen=True)
class SinkBench:
    """Rows per second of each way in (see the module doc)."""

    rows: int
    batch_size: int
    #: raw insert format -> rows/s
    raw: dict[str, float]
    sink_rows_per_s: float
    pipeline_rows_per_s: float
    decode_only_rows_per_s: float
    #: way -> rows per CPU second of this process (all its threads, the engine's included):
    #: steadier than rows/s on a machine others load
    cpu_rows_per_s: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def fastest_raw(self) -> tuple[str, float]:
        """The fastest raw insert format and its rows/s."""
        name = max(self.raw, key=lambda k: self.raw[k])
        return name, self.raw[name]

    @property
    def tsv_raw(self) -> float:
        """Rows/s of the raw TabSeparated insert."""
        return self.raw.get("TabSeparated", float("nan"))

    def summary(self) -> str:
        """One line per figure, with the ratio to the fastest raw insert."""
        best_name, best = self.fastest_raw
        lines = [
            f"sink bench: {self.rows} tool calls, batch size {self.batch_size}, "
            f"ratios to the fastest raw insert by each measure (rows/s: {best_name})"
        ]
        figures = [(f"raw {name}", name, value) for name, value in self.raw.items()]
        figures += [
            ("ClickHouseSink", "sink", self.sink_rows_per_s),
            ("decode + redact + sink", "pipeline", self.pipeline_rows_per_s),
            ("decode only", "decode only", self.decode_only_rows_per_s),
        ]
        # per CPU second, the ratios are to the fastest raw insert by that measure
        best_cpu = max(
            (self.cpu_rows_per_s.get(name, float("nan")) for name in self.raw), default=1
        )
        for label, way, value in figures:
            per_cpu = self.cpu_rows_per_s.get(way, float("nan"))
            lines.append(
                f"  {label:<34} {value:>9,.0f} rows/s ({value / best:.2f}x)"
                f"  {per_cpu:>9,.0f} rows/cpu-s ({per_cpu / best_cpu:.2f}x)"
            )
        lines.extend(f"  skipped: {reason}" for reason in self.skipped)
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
            params=f'{{"query": "find the nearest store to {i % 997}", "limit": {i % 50}}}',
            result_summary=f"{i % 7} results",
        )
        for i in range(count)
    ]


class _Raw:
    """Raw inserts of records' values into one table, one method per format."""

    def __init__(self, backend: Any, table: str, fields: Sequence[str], scratch: Path) -> None:
        self.backend = backend
        self.session = backend._session  # the embedded engine's chdb session
        self.target = f"{backend.database}.{table}"
        self.table = table
        self.fields = list(fields)
        self.getter = attrgetter(*fields)
        self.columns = ", ".join(fields)
        self.file = scratch / "raw-insert.arrows"

    def _sql(self, token: str) -> str:
        settings = f"SETTINGS insert_deduplication_token = '{token}'"
        return f"INSERT INTO {self.target} ({self.columns}) {settings}"

    def tsv(self, records: Sequence[ToolCall], token: str) -> None:
        rows = [self.getter(r) for r in records]
        self.session.query(f"{self._sql(token)} FORMAT TabSeparated\n{encode_rows(rows)}", "CSV")

    def arrow_table(self, records: Sequence[ToolCall]) -> Any:
        from agentstream.sinks.clickhouse._arrow import arrow_table

        schema = self.backend._insert_schema(self.table, tuple(self.fields))
        return arrow_table(schema, [self.getter(r) for r in records])

    def arrow_python(self, records: Sequence[ToolCall], token: str) -> None:
        _bench_rows = self.arrow_table(records)  # found by name by chdb's Python()
        self.session.query(f"{self._sql(token)} SELECT * FROM Python(_bench_rows)", "CSV")

    def arrow_stream(self, records: Sequence[ToolCall], token: str) -> None:
        import pyarrow as pa
        from pyarrow import ipc

        table = self.arrow_table(records)
        with pa.OSFile(str(self.file), "wb") as sink, ipc.new_stream(sink, table.schema) as out:
            out.write_table(table)
        self.session.query(
            f"INSERT INTO {self.target} ({self.columns}) FROM INFILE '{self.file}' "
            f"SETTINGS insert_deduplication_token = '{token}' FORMAT ArrowStream",
            "CSV",
        )


def _native_client(folder: Path, database: str) -> Any:
    """clickhouse-connect's client on the same chdb engine (``None`` if it has no chdb)."""
    try:
        import clickhouse_connect

        return clickhouse_connect.get_client(interface="chdb", path=str(folder), database=database)
    except Exception:  # an older clickhouse-connect without the chdb interface
        return None


def _best_rate(rows: int, runs: list[float]) -> float:
    return rows / min(runs) if runs else float("nan")


def bench_sink(
    rows: int = 100_000, *, settings: Settings | None = None, rounds: int = 3
) -> SinkBench:
    """Measure every way in, on an embedded engine in a temporary folder."""
    chosen = settings or load_settings()
    batch = chosen.sink.batch_size
    folder = Path(tempfile.mkdtemp(prefix="agentstream-bench-"))
    clickhouse = chosen.clickhouse.model_copy(
        update={"backend": "embedded", "path": folder / "chdb", "database": "bench"}
    )
    backend: Any = open_backend(clickhouse)
    skipped: list[str] = []
    try:
        migrate(backend, chosen)
        spec = TABLES["tool_calls"]
        fields = list(spec.model.model_fields)
        calls = _calls(rows)
        encoded = [(call.run_id.encode(), encode_model(call)) for call in calls]
        raw = _Raw(backend, spec.name, fields, folder)
        native = _native_client(folder / "chdb", "bench")
        if native is None:
            skipped.append("raw Native: clickhouse-connect has no chdb interface here")

        def batches(run: int, insert: Callable[[Sequence[ToolCall], str], None]) -> None:
            for i in range(0, rows, batch):
                insert(calls[i : i + batch], f"raw-{run}-{i}")

        def native_insert(records: Sequence[ToolCall], token: str) -> None:
            values = [raw.getter(r) for r in records]
            native.insert(
                spec.name,
                values,
                column_names=fields,
                settings={"insert_deduplication_token": token},
            )

        def through_sink(run: int) -> None:
            sink = ClickHouseSink(backend, chosen.sink)
            topic = f"sink-{run}"  # dedup tokens come from positions: a new topic per run
            for n, call in enumerate(calls):
                sink.add_record(call, Position(topic, 0, n))
                if n % _CHUNK == _CHUNK - 1 and sink.due():
                    sink.flush().raise_for_error()
            sink.flush(force=True).raise_for_error()

        def pipeline(run: int) -> None:
            sink = ClickHouseSink(backend, chosen.sink)
            topic = f"pipeline-{run}"
            earliest, latest = plausible_event_times(utc_now(), chosen)
            for n, (key, data) in enumerate(encoded):
                record = _decode_model(data, ToolCall)
                if not earliest <= record.event_time <= latest:
                    raise RuntimeError("a bench record's event time is out of range")
                sink.add_record(record, Position(topic, 0, n), raw=data, key=key)
                if n % _CHUNK == _CHUNK - 1:
                    earliest, latest = plausible_event_times(utc_now(), chosen)
                    if sink.due():
                        sink.flush().raise_for_error()
            sink.flush(force=True).raise_for_error()

        def decode_only(_run: int) -> None:
            for _key, data in encoded:
                _decode_model(data, ToolCall)

        ways: dict[str, Callable[[int], None]] = {
            "TabSeparated": lambda run: batches(run, raw.tsv),
            "Arrow, Python() table function": lambda run: batches(run, raw.arrow_python),
            "ArrowStream, FROM INFILE": lambda run: batches(run, raw.arrow_stream),
        }
        if native is not None:
            ways["Native, clickhouse-connect"] = lambda run: batches(run, native_insert)
        ways |= {"sink": through_sink, "pipeline": pipeline, "decode only": decode_only}
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        cpu: dict[str, list[float]] = {name: [] for name in ways}
        gc.collect()
        gc.freeze()
        for run in range(rounds):
            for name, way in ways.items():
                backend.command(f"TRUNCATE TABLE {spec.name}")
                started, cpu_started = time.perf_counter(), time.process_time()
                way(run)
                seconds[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
                if name != "decode only":
                    stored = backend.query(f"SELECT count() FROM {spec.name}").scalar()
                    if stored != rows:
                        raise RuntimeError(f"{name} stored {stored} rows of {rows}")
        if native is not None:
            native.close()
        rates = {name: _best_rate(rows, runs) for name, runs in seconds.items()}
        return SinkBench(
            cpu_rows_per_s={name: _best_rate(rows, runs) for name, runs in cpu.items()},
            rows=rows,
            batch_size=batch,
            raw={k: v for k, v in rates.items() if k not in ("sink", "pipeline", "decode only")},
            sink_rows_per_s=rates["sink"],
            pipeline_rows_per_s=rates["pipeline"],
            decode_only_rows_per_s=rates["decode only"],
            skipped=skipped,
        )
    finally:
        gc.unfreeze()
        backend.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - manual runs
    import sys

    print(bench_sink(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000).summary())
