"""Rollups count review approval and scores per scope (ReviewDecision v3), at every
resolution; the truth is counted here from the decisions themselves."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agentstream.core.config import RollupSettings
from agentstream.processors.rollups import RollupAggregator, merge_rollups
from agentstream.schemas import Decision, ReviewDecision

T0 = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
FAR = int((T0 + timedelta(days=1)).timestamp() * 1_000_000)


def test_approval_and_scores_are_counted_per_scope_at_every_resolution() -> None:
    rng = random.Random(5)
    decisions = [
        ReviewDecision(
            tenant_id="acme",
            user_id="u",
            agent_id="planner",
            agent_version=rng.choice(["1.0", "2.0"]),
            run_id=f"r{i}",
            event_time=T0 + timedelta(seconds=rng.randrange(150)),
            reviewer="alice",
            decision=rng.choice(list(Decision)),
            score=rng.choice([None, 1, 2, 3, 4, 5]),
        )
        for i in range(300)
    ]
    agg = RollupAggregator(RollupSettings(allowed_lateness_s=1))
    for d in decisions:
        agg.add(d)
    rollups = agg.advance(FAR)
    for version in ("1.0", "2.0"):
        mine = [d for d in decisions if d.agent_version == version]
        want = (
            len(mine),
            sum(d.decision is Decision.APPROVED for d in mine),
            sum(d.score or 0 for d in mine),
            sum(d.score is not None for d in mine),
        )
        key = f"tenant=acme/agent=planner@{version}"
        for resolution in ("1s", "1m", "1h"):
            windows = [r for r in rollups if r.resolution == resolution and r.scope_key == key]
            got = (
                sum(r.reviews for r in windows),
                sum(r.reviews_approved for r in windows),
                sum(r.review_score_sum for r in windows),
                sum(r.reviews_scored for r in windows),
            )
            assert got == want, (version, resolution)
    # a minute merged from its seconds carries the same review figures
    seconds = [r for r in rollups if r.resolution == "1s" and r.scope_key == "global"]
    first_minute = [r for r in seconds if r.window_start < T0 + timedelta(minutes=1)]
    merged = merge_rollups(first_minute, resolution="1m")
    minute = next(
        r
        for r in rollups
        if r.resolution == "1m" and r.scope_key == "global" and r.window_start == T0
    )
    assert (merged.reviews_approved, merged.review_score_sum, merged.reviews_scored) == (
        minute.reviews_approved,
        minute.review_score_sum,
        minute.reviews_scored,
    )
