"""The 1 d rollup tier through the real broker and engine, against truth computed here.

The truth is plain Python over the generated events: no rollup code is imported.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.schemas import (
    CallStatus,
    ErrorClass,
    ModelCall,
    Rollup,
    ToolCall,
    encode_model,
)
from tests.support.engine import engine_settings, produce, read_committed, run_engine

pytestmark = pytest.mark.integration

_AGENTS = (("acme", "planner", "1.0"), ("acme", "coder", "2.1"), ("globex", "planner", "1.0"))


def _days_ago(n: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=n)


def _traffic(seed: int, day0: datetime) -> list[ToolCall | ModelCall]:
    """Events spread over two whole days, then a few in the next day's first minutes
    (their event time moves the watermark past the second day's end)."""
    rng = random.Random(seed)
    events: list[ToolCall | ModelCall] = []
    offsets = sorted(rng.uniform(0, 2 * 86_400) for _ in range(600))
    offsets += [2 * 86_400 + 120 + i for i in range(5)]
    for i, offset in enumerate(offsets):
        tenant, agent, version = rng.choice(_AGENTS)
        ctx = {
            "tenant_id": tenant,
            "user_id": "u1",
            "agent_id": agent,
            "agent_version": version,
            "run_id": f"run-{i}",
            "event_time": day0 + timedelta(seconds=offset),
        }
        if rng.random() < 0.6:
            failed = rng.random() < 0.1
            events.append(
                ToolCall(
                    **ctx,
                    tool=rng.choice(("search", "sql")),
                    status=CallStatus.ERROR if failed else CallStatus.SUCCESS,
                    error_class=ErrorClass.RETRYABLE if failed else ErrorClass.NONE,
                    latency_ms=rng.uniform(1, 500),
                )
            )
        else:
            events.append(
                ModelCall(
                    **ctx,
                    model="m",
                    provider="p",
                    input_tokens=rng.randint(1, 900),
                    output_tokens=rng.randint(1, 300),
                    cost_usd=rng.randint(1, 5_000) / 1_000_000,
                    latency_ms=rng.uniform(1, 900),
                    status=CallStatus.SUCCESS,
                )
            )
    return events


def _truth(
    events: list[ToolCall | ModelCall], closed_before: datetime
) -> dict[tuple[datetime, str], Counter[str]]:
    """Per (UTC day, tenant / agent scope key): the figures of the days that closed."""
    out: dict[tuple[datetime, str], Counter[str]] = defaultdict(Counter)
    for e in events:
        day = e.event_time.replace(hour=0, minute=0, second=0, microsecond=0)
        if day + timedelta(days=1) > closed_before:
            continue
        tenant = f"tenant={e.tenant_id}"
        for key in (tenant, f"{tenant}/agent={e.agent_id}@{e.agent_version}"):
            figures = out[(day, key)]
            if isinstance(e, ToolCall):
                figures["count"] += 1
                figures["error"] += e.status is CallStatus.ERROR
            else:
                figures["model_calls"] += 1
                figures["tokens_in"] += e.input_tokens
                figures["tokens_out"] += e.output_tokens
                figures["cost_nusd"] += round(e.cost_usd * 1_000_000_000)
    return out


def test_daily_rollups_match_ground_truth(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker, partitions=1, rollups={"allowed_lateness_s": 1})
    day0 = _days_ago(4)
    events = _traffic(seed=11, day0=day0)
    produce(
        settings,
        [
            ("tool_calls" if isinstance(e, ToolCall) else "model_calls", e.run_id, encode_model(e))
            for e in events
        ],
    )
    run_engine(settings, lambda e: e.stats.consumed == len(events))
    daily = [
        r
        for r in read_committed(settings, "rollups")
        if isinstance(r, Rollup) and r.resolution == "1d"
    ]
    latest = {(r.window_start, r.scope_key): r for r in daily}  # a correction comes later
    watermark = max(e.event_time for e in events) - timedelta(seconds=1)
    truth = _truth(events, closed_before=watermark)

    # the two whole days closed, the third did not; only tenant and agent scopes
    assert {start for start, _ in latest} == {day0, day0 + timedelta(days=1)}
    assert {r.scope_kind.value for r in daily} == {"TENANT", "AGENT"}
    assert set(latest) == set(truth)
    for key, want in truth.items():
        got = latest[key]
        assert got.window_end - got.window_start == timedelta(days=1)
        assert got.count == want["count"], key
        assert got.error == want["error"], key
        assert got.model_calls == want["model_calls"], key
        assert got.tokens_in == want["tokens_in"], key
        assert got.tokens_out == want["tokens_out"], key
        assert round(got.cost_usd * 1_000_000_000) == want["cost_nusd"], key
