"""Tiered retention on the real engine: a TTL merge drops exactly the expired rows."""

from __future__ import annotations

import datetime as dt

import pytest

from agentstream.core.config import load_settings
from agentstream.schemas import (
    InvalidEvent,
    Retention,
    Rollup,
    ScopeKind,
    StateTransition,
    ToolCall,
)
from agentstream.sinks.clickhouse import ClickHouseBackend, ClickHouseSink, migrate

pytestmark = pytest.mark.integration

RETENTION = {
    "business_days": 30,
    "legal_days": 400,
    "rollups_1s_days": 2,
    "rollups_1m_days": 10,
    "rollups_1h_days": 100,
}
#: ages in days, each at least a day away from every limit above
AGES = (0.5, 1.5, 5, 20, 45, 90, 300, 700)


def _ctx(i: int) -> dict[str, str]:
    return {
        "tenant_id": f"t{i % 3}",
        "user_id": "u",
        "agent_id": "a",
        "agent_version": "1",
        "run_id": f"r{i}",
    }


def _hold_ttl(backend: ClickHouseBackend, tables: list[str]) -> None:
    """Keep background TTL merges from expiring rows before the test looks."""
    for table in tables:
        backend.command(f"SYSTEM STOP TTL MERGES {table}")


def _expire_all(backend: ClickHouseBackend, tables: list[str]) -> None:
    for table in tables:
        backend.command(f"SYSTEM START TTL MERGES {table}")
        backend.command(f"OPTIMIZE TABLE {table} FINAL")


def test_business_rows_expire_and_legal_rows_stay(clickhouse: ClickHouseBackend) -> None:
    settings = load_settings(retention=RETENTION)
    migrate(clickhouse, settings)
    _hold_ttl(clickhouse, ["tool_calls", "state_transitions"])
    sink = ClickHouseSink(clickhouse, settings.sink)
    now = dt.datetime.now(dt.UTC)
    expected_tool: set[str] = set()
    expected_transition: set[str] = set()
    i = 0
    for age in AGES:
        for retention in Retention:
            i += 1
            when = now - dt.timedelta(days=age)
            call = ToolCall(
                **_ctx(i),
                event_time=when,
                tool="search",
                status="SUCCESS",
                latency_ms=1.0,
                retention=retention,
            )
            move = StateTransition(**_ctx(i), event_time=when, to_state="INIT", retention=retention)
            sink.add_record(call)
            sink.add_record(move)
            limit = RETENTION[f"{retention.value.lower()}_days"]
            if age < limit:
                expected_tool.add(call.event_id)
                expected_transition.add(move.event_id)
    sink.flush(force=True).raise_for_error()
    # every row landed; only the TTL merge below may take some away
    assert clickhouse.query("SELECT count() FROM tool_calls").scalar() == i
    assert len(expected_tool) < i

    _expire_all(clickhouse, ["tool_calls", "state_transitions"])

    kept_tool = {str(r[0]) for r in clickhouse.query("SELECT event_id FROM tool_calls").rows}
    kept_moves = {
        str(r[0]) for r in clickhouse.query("SELECT event_id FROM state_transitions").rows
    }
    assert kept_tool == expected_tool
    assert kept_moves == expected_transition
    # both classes had rows on both sides of their limit
    legal = clickhouse.query("SELECT count() FROM tool_calls WHERE retention = 'LEGAL'").scalar()
    business = clickhouse.query(
        "SELECT count() FROM tool_calls WHERE retention = 'BUSINESS'"
    ).scalar()
    assert 0 < business < legal < len(AGES)


def test_rollups_and_dead_letters_expire_by_their_own_settings(
    clickhouse: ClickHouseBackend,
) -> None:
    settings = load_settings(retention=RETENTION)
    migrate(clickhouse, settings)
    _hold_ttl(clickhouse, ["rollups_1s", "rollups_1m", "rollups_1h", "invalid_events"])
    sink = ClickHouseSink(clickhouse, settings.sink)
    now = dt.datetime.now(dt.UTC)
    expected: dict[str, set[str]] = {"rollups_1s": set(), "rollups_1m": set(), "rollups_1h": set()}
    expected_dead: set[str] = set()
    for n, age in enumerate(AGES):
        start = (now - dt.timedelta(days=age)).replace(microsecond=0)
        for resolution, length in (("1s", 1), ("1m", 60), ("1h", 3600)):
            key = f"k{n}"
            sink.add_record(
                Rollup(
                    resolution=resolution,
                    window_start=start,
                    window_end=start + dt.timedelta(seconds=length),
                    scope_kind=ScopeKind.GLOBAL,
                    scope_key=key,
                    count=1,
                )
            )
            if age < RETENTION[f"rollups_{resolution}_days"]:
                expected[f"rollups_{resolution}"].add(key)
        dead = InvalidEvent(
            detected_time=now - dt.timedelta(days=age),
            source_topic="agent.tool_calls",
            partition=0,
            offset=n,
            raw=b"\x00",
            reason="bad",
            error_type="CodecError",
        )
        sink.add_record(dead)
        if age < RETENTION["business_days"]:
            expected_dead.add(dead.invalid_id)
    sink.flush(force=True).raise_for_error()
    assert clickhouse.query("SELECT count() FROM invalid_events").scalar() == len(AGES)
    _expire_all(clickhouse, [*expected, "invalid_events"])
    for table, keys in expected.items():
        kept = {r[0] for r in clickhouse.query(f"SELECT scope_key FROM {table}").rows}
        assert kept == keys, table
    kept_dead = {str(r[0]) for r in clickhouse.query("SELECT invalid_id FROM invalid_events").rows}
    assert kept_dead == expected_dead
