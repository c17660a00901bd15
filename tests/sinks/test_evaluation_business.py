"""The daily business tier and the hourly hand-offs (canned reports over the 1 h rollups and
the raw feedback), against a truth counted here from the generated events. The rollups come
from the real aggregator and go through the real sink."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentstream.core.config import ClickHouseSettings, RollupSettings, load_settings
from agentstream.processors.rollups import RollupAggregator
from agentstream.schemas import Feedback, ModelCall, Record, ReviewDecision, StateTransition
from agentstream.sinks import Position
from agentstream.sinks.analyst import AnalystEngine, LocalAnalyst, Principal
from agentstream.sinks.clickhouse import ClickHouseSink, migrate, open_backend

pytestmark = pytest.mark.integration

DAY0 = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(
    days=3
)
AGENTS = ("triage", "booker", "refunds")


class Truth:
    def __init__(self, seed: int = 21) -> None:
        rnd = random.Random(seed)
        self.events: list[StateTransition | ModelCall | Feedback | ReviewDecision] = []
        self.daily: dict[tuple[dt.date, str], dict[str, Any]] = defaultdict(
            lambda: {
                "tasks": 0,
                "completed": 0,
                "failed": 0,
                "handoffs": 0,
                "cost": 0.0,
                "value": 0.0,
                "scores": [],
                "review_scores": [],
            }
        )
        self.hourly: dict[tuple[dt.datetime, str], list[int]] = defaultdict(lambda: [0, 0])
        for n in range(400):
            agent = AGENTS[n % 3]
            at = DAY0 + dt.timedelta(seconds=rnd.uniform(0, 3 * 86400 - 120))
            ids = {
                "tenant_id": "acme",
                "user_id": "u",
                "agent_id": agent,
                "agent_version": "1.0",
                "run_id": f"run-{n}",
            }
            parent = f"run-{n - 1}" if agent != "triage" and rnd.random() < 0.5 else None
            day = self.daily[at.date(), agent]
            hour = self.hourly[at.replace(minute=0, second=0, microsecond=0), agent]
            self.events.append(
                StateTransition(
                    **ids,
                    to_state="INIT",
                    parent_run_id=parent,
                    handoff_from_agent="triage" if parent else None,
                    event_time=at,
                )
            )
            day["tasks"] += 1
            day["handoffs"] += parent is not None
            hour[0] += 1
            hour[1] += parent is not None
            cost = round(rnd.uniform(0.001, 0.05), 6)
            self.events.append(
                ModelCall(
                    **ids,
                    model="m",
                    provider="p",
                    cost_usd=cost,
                    latency_ms=5.0,
                    status="SUCCESS",
                    event_time=at + dt.timedelta(seconds=1),
                )
            )
            day["cost"] += cost
            done = rnd.random() < 0.8
            value = round(rnd.uniform(1, 40), 2) if done else None
            self.events.append(
                StateTransition(
                    **ids,
                    from_state="REVIEWING" if done else "EXECUTING",
                    to_state="COMPLETED" if done else "FAILED",
                    value_usd=value,
                    event_time=at + dt.timedelta(seconds=2),
                )
            )
            day["completed" if done else "failed"] += 1
            day["value"] += value or 0.0
            if rnd.random() < 0.3:
                score = rnd.randint(1, 5)
                self.events.append(
                    Feedback(**ids, satisfaction=score, event_time=at + dt.timedelta(seconds=3))
                )
                day["scores"].append(score)
            if rnd.random() < 0.2:
                review = rnd.choice([None, 1, 2, 3, 4, 5])
                self.events.append(
                    ReviewDecision(
                        **ids,
                        reviewer="r",
                        decision="APPROVED",
                        score=review,
                        event_time=at + dt.timedelta(seconds=4),
                    )
                )
                if review is not None:
                    day["review_scores"].append(review)


@pytest.fixture(scope="module")
def populated(chdb_path: Path) -> Iterator[tuple[LocalAnalyst, Truth]]:
    truth = Truth()
    aggregator = RollupAggregator(RollupSettings(allowed_lateness_s=1))
    records: list[Record] = []
    for event in sorted(truth.events, key=lambda e: e.event_time):
        if isinstance(event, Feedback | ReviewDecision):
            records.append(event)
        if not isinstance(event, Feedback):
            aggregator.add(event)
    far = int((DAY0 + dt.timedelta(days=5)).timestamp() * 1_000_000)
    records += [r for r in aggregator.advance(far) if r.resolution in ("1h", "1d")]
    database = f"business_{uuid.uuid4().hex[:10]}"
    clickhouse = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    try:
        settings = load_settings()
        migrate(clickhouse, settings)
        sink = ClickHouseSink(clickhouse, settings.sink)
        for n, record in enumerate(records):
            sink.add_record(record, Position("t", 0, n))
        sink.flush(force=True).raise_for_error()
        yield (
            LocalAnalyst(AnalystEngine(clickhouse, settings.analyst), Principal("t", "admin")),
            truth,
        )
    finally:
        clickhouse.command(f"DROP DATABASE IF EXISTS {database}")
        clickhouse.close()


def test_daily_business_tier(populated: tuple[LocalAnalyst, Truth]) -> None:
    analyst, truth = populated
    rows = analyst.report("business", since=DAY0).dicts()
    got = {(dt.date.fromisoformat(str(r["day"])), r["agent_id"]): r for r in rows}
    assert set(got) == set(truth.daily)
    for key, want in truth.daily.items():
        row = got[key]
        assert row["tenant_id"] == "acme"
        assert (row["tasks"], row["completed"], row["failed"], row["handoffs"]) == (
            want["tasks"],
            want["completed"],
            want["failed"],
            want["handoffs"],
        ), key
        assert row["cost_usd"] == pytest.approx(want["cost"], abs=1e-6)
        assert row["value_usd"] == pytest.approx(want["value"], abs=1e-6)
        assert row["roi"] == pytest.approx(want["value"] / want["cost"], rel=1e-6)
        scores = want["scores"]
        assert row["feedback"] == len(scores)
        if scores:
            assert row["satisfaction"] == pytest.approx(sum(scores) / len(scores))
        else:
            assert row["satisfaction"] is None
        reviews = want["review_scores"]
        assert row["scored_reviews"] == len(reviews)
        if reviews:
            assert row["review_score"] == pytest.approx(sum(reviews) / len(reviews))
        else:
            assert row["review_score"] is None
    assert sum(w["handoffs"] for w in truth.daily.values()) > 50


def test_hourly_handoffs(populated: tuple[LocalAnalyst, Truth]) -> None:
    analyst, truth = populated
    rows = analyst.report("handoffs", since=DAY0).dicts()
    got = {
        (dt.datetime.fromisoformat(str(r["hour"])).replace(tzinfo=dt.UTC), r["agent_id"]): r
        for r in rows
    }
    assert set(got) == set(truth.hourly)
    for key, (started, handoffs) in truth.hourly.items():
        row = got[key]
        assert (row["runs_started"], row["handoffs"]) == (started, handoffs), key
        assert row["handoff_rate"] == pytest.approx(handoffs / started)
