"""The ClickHouse sink on the real engine: fidelity, dedup, refused rows, retries, redaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agentstream.core.config import SinkSettings, load_settings
from agentstream.core.errors import StorageError
from agentstream.core.redact import Redactor
from agentstream.schemas import (
    Alert,
    InvalidEvent,
    ModelCall,
    Record,
    ReviewDecision,
    Rollup,
    StateTransition,
    ToolCall,
)
from agentstream.sinks import Position
from agentstream.sinks.clickhouse import (
    TABLES,
    ClickHouseBackend,
    ClickHouseSink,
    QueryResult,
    is_rejection,
    migrate,
    table_for,
)
from tests.support.clickhouse import FlakyBackend

pytestmark = pytest.mark.integration

#: recent (older rows would already be past their retention) with microseconds set
NOW = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=123456)
CTX: dict[str, Any] = {
    "tenant_id": "acme",
    "user_id": "u-1",
    "agent_id": "planner",
    "agent_version": "1.2.0",
    "run_id": "run-1",
    "trace_id": "tr",
    "span_id": None,
}


def tool_call(i: int, **extra: Any) -> ToolCall:
    fields: dict[str, Any] = {
        **CTX,
        "event_time": NOW + dt.timedelta(seconds=i),
        "tool": f"tool-{i % 4}",
        "status": "SUCCESS",
        "latency_ms": 10.0 + i,
        **extra,
    }
    return ToolCall(**fields)


def samples() -> list[Record]:
    window = {"window_start": NOW, "window_end": NOW + dt.timedelta(minutes=1)}
    return [
        tool_call(
            1,
            status="ERROR",
            error_class="RETRYABLE",
            error_code="503",
            timeout_ms=500.0,
            attempt=2,
            fallback_used=True,
            output_valid=False,
            idempotent=True,
            atomic=True,
            retention="LEGAL",
            params={"q": "tab\there", "n": 1},
            result_summary="line1\nline2 'quoted' \\ back",
        ),
        ModelCall(
            **CTX,
            event_time=NOW,
            model="gpt",
            provider="openai",
            input_tokens=10,
            output_tokens=20,
            cost_usd=0.0125,
            latency_ms=200.5,
            status="SUCCESS",
        ),
        StateTransition(
            **CTX,
            event_time=NOW,
            from_state="EXECUTING",
            to_state="FAILED",
            reason="budget",
            error_category="TIMEOUT",
            dwell_ms=600_000,
            synthesized=True,
        ),
        StateTransition(**CTX, event_time=NOW, to_state="INIT"),
        ReviewDecision(**CTX, event_time=NOW, reviewer="rev", decision="OVERRIDDEN", comment="c"),
        InvalidEvent(
            detected_time=NOW,
            source_topic="agent.tool_calls",
            partition=3,
            offset=99,
            key=b"run-1",
            raw=bytes(range(256)),
            reason="bad",
            error_type="CodecError",
            run_id="run-1",
        ),
        Rollup(
            resolution="1m",
            **window,
            scope_kind="TOOL",
            scope_key="acme/search",
            tenant_id="acme",
            tool="search",
            count=5,
            success=4,
            error=1,
            latency_p50=1.5,
            latency_sketch=b"\x00\x01\xff",
            state_time_ms={"EXECUTING": 1000, "INIT": 5},
            cost_usd=0.5,
            computed_at=NOW,
        ),
        Alert(
            rule_id="error-rate",
            state="FIRING",
            severity="CRITICAL",
            scope_key="global",
            metric="error_rate",
            value=0.2,
            threshold=0.05,
            comparator=">",
            resolution="1m",
            **window,
            fired_at=NOW,
            message="error rate 20% > 5%",
            channels=("log", "slack"),
        ),
    ]


def _read_back(backend: ClickHouseBackend, record: Record) -> dict[str, Any]:
    table = table_for(record)
    spec = TABLES[table]
    fields = spec.model.model_fields
    select = []
    for name in fields:
        annotation = str(fields[name].annotation)
        select.append(f"hex({name}) AS {name}" if "bytes" in annotation else name)
    key = "alert_id" if table == "alerts" else "invalid_id" if table == "invalid_events" else None
    if isinstance(record, Rollup):
        where, params = "scope_key = {k:String}", {"k": record.scope_key}
    else:
        key = key or "event_id"
        where, params = f"toString({key}) = {{k:String}}", {"k": getattr(record, key)}
    result: QueryResult = backend.query(
        f"SELECT {', '.join(select)} FROM {spec.view} WHERE {where}", params
    )
    assert len(result.rows) == 1
    return result.dicts()[0]


def _expected(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in record.__dict__.items():
        if isinstance(value, bytes):
            out[name] = value.hex().upper()
        elif isinstance(value, tuple):
            out[name] = list(value)
        elif isinstance(value, dict):
            out[name] = {str(k): v for k, v in value.items()}
        else:
            out[name] = value
    return out


def _fresh(clickhouse: ClickHouseBackend, **sink: Any) -> ClickHouseSink:
    settings = load_settings(sink=sink)
    migrate(clickhouse, settings)
    return ClickHouseSink(clickhouse, settings.sink)


def test_every_model_round_trips_through_its_table(clickhouse: ClickHouseBackend) -> None:
    sink = _fresh(clickhouse, redact=False)
    records = samples()
    for n, record in enumerate(records):
        sink.add_record(record, Position("t", 0, n))
    report = sink.flush(force=True)
    assert report.error is None
    assert not report.rejected
    for record in records:
        stored = _read_back(clickhouse, record)
        expected = _expected(record)
        assert stored == expected, type(record).__name__


def test_a_retried_batch_with_the_same_token_adds_nothing(clickhouse: ClickHouseBackend) -> None:
    sink = _fresh(clickhouse)
    calls = [tool_call(i) for i in range(50)]
    for _ in range(2):  # the same records at the same positions, twice
        for n, call in enumerate(calls):
            sink.add_record(call, Position("t", 0, n))
        sink.flush(force=True).raise_for_error()
    # dropped at insert time: not even a second physical copy
    assert clickhouse.query("SELECT count() FROM tool_calls").scalar() == 50


def test_a_replay_cut_differently_is_deduplicated_by_final_and_views(
    clickhouse: ClickHouseBackend,
) -> None:
    sink = _fresh(clickhouse)
    calls = [tool_call(i) for i in range(60)]
    for n, call in enumerate(calls[:40]):
        sink.add_record(call, Position("t", 0, n))
    sink.flush(force=True).raise_for_error()
    # a replay from offset 25 on (different batch, different token)
    for n, call in enumerate(calls[25:], start=25):
        sink.add_record(call, Position("t", 0, n))
    sink.flush(force=True).raise_for_error()
    raw = clickhouse.query("SELECT count() FROM tool_calls").scalar()
    assert raw == 40 + 35  # two physical copies of offsets 25..39 until a merge
    assert clickhouse.query("SELECT count() FROM tool_calls FINAL").scalar() == 60
    assert clickhouse.query("SELECT count() FROM tool_calls_dedup").scalar() == 60
    assert clickhouse.query("SELECT count(DISTINCT event_id) FROM tool_calls").scalar() == 60
    clickhouse.command("OPTIMIZE TABLE tool_calls FINAL")
    assert clickhouse.query("SELECT count() FROM tool_calls").scalar() == 60


def test_rows_clickhouse_refuses_are_isolated_and_reported(clickhouse: ClickHouseBackend) -> None:
    sink = _fresh(clickhouse)
    bad_time = dt.datetime(1969, 7, 20, tzinfo=dt.UTC)  # before the TTL's DateTime range
    records = [tool_call(i) for i in range(20)]
    records[3] = tool_call(3, event_time=bad_time)
    records[17] = tool_call(17, event_time=bad_time)
    for n, record in enumerate(records):
        sink.add_record(record, Position("agent.tool_calls", 2, 100 + n), raw=b"raw%d" % n)
    report = sink.flush(force=True)
    assert report.error is None
    assert [(r.position, r.item.raw, r.item.event_id) for r in report.rejected] == [
        (Position("agent.tool_calls", 2, 103), b"raw3", records[3].event_id),
        (Position("agent.tool_calls", 2, 117), b"raw17", records[17].event_id),
    ]
    assert all("event_time_in_ttl_range" in r.reason for r in report.rejected)
    assert report.written == {"tool_calls": 18}
    stored = {str(r[0]) for r in clickhouse.query("SELECT event_id FROM tool_calls").rows}
    assert stored == {r.event_id for n, r in enumerate(records) if n not in (3, 17)}


def test_server_errors_are_retried_with_the_same_token(clickhouse: ClickHouseBackend) -> None:
    settings = load_settings(sink={"retry_initial_s": 0.01, "retry_max_s": 0.02})
    migrate(clickhouse, settings)
    flaky = FlakyBackend(clickhouse, failures=2)
    clock = [0.0]
    sink = ClickHouseSink(flaky, settings.sink, clock=lambda: clock[0])
    for n in range(10):
        sink.add_record(tool_call(n), Position("t", 0, n))
    errors = []
    for _ in range(3):
        report = sink.flush(force=True)
        errors.append(report.error is not None)
        clock[0] += 1.0
    assert errors == [True, True, False]
    assert len(set(flaky.tokens)) == 1
    assert len(flaky.tokens) == 3
    assert clickhouse.query("SELECT count() FROM tool_calls").scalar() == 10


def test_a_retried_batch_counts_its_redactions_once(clickhouse: ClickHouseBackend) -> None:
    settings = load_settings(sink={"retry_initial_s": 0.01, "retry_max_s": 0.02})
    migrate(clickhouse, settings)
    sink = ClickHouseSink(FlakyBackend(clickhouse, failures=2), settings.sink)
    leaky = [tool_call(n, result_summary=f"mail bob{n}@example.com") for n in range(3)]
    clean = [tool_call(n) for n in range(3, 10)]
    for n, record in enumerate([*clean[:2], *leaky, *clean[2:]]):
        sink.add_record(record, Position("t", 0, n))
    errors = [sink.flush(force=True).error is not None for _ in range(3)]
    assert errors == [True, True, False]
    assert sink.take_redactions() == {"tool_calls": {"email": 3}}
    rows = clickhouse.query("SELECT event_id, result_summary, sink_redactions FROM tool_calls")
    by_id = {str(r[0]): r[1:] for r in rows.rows}
    assert len(by_id) == 10
    for record in leaky:
        assert by_id[record.event_id] == ("mail [REDACTED:email]", {"email": 1})
    for record in clean:
        assert by_id[record.event_id] == (record.result_summary, {})


def test_rejection_is_told_apart_from_server_trouble() -> None:
    assert is_rejection(StorageError("Code: 469. DB::Exception: Constraint violated"))
    assert is_rejection(StorageError("Code: 27. DB::Exception: Cannot parse input"))
    assert is_rejection(TypeError("cannot store a set in ClickHouse"))
    assert not is_rejection(StorageError("Code: 210. DB::NetException: Connection refused"))
    assert not is_rejection(StorageError("Code: 252. Too many parts"))
    assert not is_rejection(StorageError("connection reset by peer"))


def test_free_text_is_redacted_again_unless_disabled(clickhouse: ClickHouseBackend) -> None:
    sink = _fresh(clickhouse)
    leaky = tool_call(
        1, params={"note": "mail bob@example.com"}, result_summary="call +1 415 555 0100"
    )
    sink.add_record(leaky)
    sink.flush(force=True).raise_for_error()
    params, summary = clickhouse.query("SELECT params, result_summary FROM tool_calls").rows[0]
    assert "bob@example.com" not in params
    assert "[REDACTED:email]" in params
    assert "415" not in summary
    assert "[REDACTED:phone]" in summary
    # what the sink's own pass replaced is kept apart from what the Emitter replaced
    assert clickhouse.query("SELECT sink_redactions, redactions FROM tool_calls").rows[0] == (
        {"email": 1, "phone": 1},
        {},
    )
    assert sink.take_redactions() == {"tool_calls": {"email": 1, "phone": 1}}
    assert sink.take_redactions() == {}

    plain = ClickHouseSink(clickhouse, SinkSettings(redact=False))
    other = tool_call(2, params={"note": "mail bob@example.com"})
    plain.add_record(other)
    plain.flush(force=True).raise_for_error()
    stored = clickhouse.query(
        "SELECT params FROM tool_calls WHERE event_id = {e:UUID}", {"e": other.event_id}
    ).scalar()
    assert "bob@example.com" in stored


def test_the_second_pass_keeps_what_the_first_produced(clickhouse: ClickHouseBackend) -> None:
    """Text the Emitter redacted is stored as is; ids in a dead letter's reason survive."""
    sink = _fresh(clickhouse)
    first = Redactor()
    counts: dict[str, int] = {}
    params = first.json_text(
        '{"card": 4111111111111111, "run": "12345678-9012-ac51-2470-90f28a8e62b5"}', counts
    )
    summary = first.text("mailed bob@example.com about order 20261130-0042", counts)
    redacted = tool_call(3, params=params, result_summary=summary, redactions=counts)
    reason = "run 12345678-9012-ac51-2470-90f28a8e62b5: invoice 4000-1234-5678 is unknown"
    dead = InvalidEvent(
        source_topic="agentstream.tool_calls",
        partition=0,
        offset=7,
        raw=b"x",
        reason=reason,
        error_type="ContractError",
    )
    sink.add_record(redacted)
    sink.add_record(dead)
    sink.flush(force=True).raise_for_error()
    row = clickhouse.query(
        "SELECT params, result_summary, redactions, sink_redactions FROM tool_calls"
    ).rows[0]
    assert row == (params, summary, {"card": 1, "email": 1}, {})
    stored = clickhouse.query("SELECT reason, sink_redactions FROM invalid_events").rows[0]
    assert stored == (reason, {})
    assert sink.take_redactions() == {}
