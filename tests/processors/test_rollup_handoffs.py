"""Rollups count hand-offs (runs started with a parent_run_id) and sum the value of completed
runs, per scope, at every resolution; the truth is counted here from the generated events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agentstream.core.config import RollupSettings
from agentstream.processors.rollups import RollupAggregator
from agentstream.processors.rollups._cells import Cell, Scope
from agentstream.processors.rollups._merge import merge_rollups
from agentstream.schemas import AgentState, Rollup, ScopeKind, StateTransition

T0 = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
FAR = int((T0 + timedelta(days=1)).timestamp() * 1_000_000)


def test_handoffs_and_value_per_scope_at_every_resolution() -> None:
    rng = random.Random(16)
    agg = RollupAggregator(RollupSettings(allowed_lateness_s=1))
    truth: dict[str, tuple[int, float]] = {}
    events: list[StateTransition] = []
    for n in range(300):
        agent = rng.choice(["triage", "booker", "refunds"])
        at = T0 + timedelta(seconds=rng.uniform(0, 3 * 3600))
        parent = f"run-{n - 1}" if agent != "triage" and rng.random() < 0.6 else None
        ids = {
            "tenant_id": "acme",
            "user_id": "u",
            "agent_id": agent,
            "agent_version": "1.0",
            "run_id": f"run-{n}",
        }
        events.append(
            StateTransition(**ids, to_state=AgentState.INIT, parent_run_id=parent, event_time=at)
        )
        value = round(rng.uniform(0, 50), 2) if rng.random() < 0.7 else None
        end = AgentState.COMPLETED if value is not None or rng.random() < 0.5 else AgentState.FAILED
        events.append(
            StateTransition(
                **ids,
                from_state=AgentState.REVIEWING,
                to_state=end,
                value_usd=value if end is AgentState.COMPLETED else None,
                event_time=at + timedelta(seconds=2),
            )
        )
        handoffs, total = truth.get(agent, (0, 0.0))
        completed_value = value if end is AgentState.COMPLETED and value is not None else 0.0
        truth[agent] = (handoffs + (parent is not None), total + completed_value)
    # in event-time order: every event is inside the horizon (lateness is tested elsewhere)
    for event in sorted(events, key=lambda e: e.event_time):
        agg.add(event)
    rollups = agg.advance(FAR)
    for resolution in ("1s", "1m", "1h"):
        for agent, (handoffs, value) in truth.items():
            key = f"tenant=acme/agent={agent}@1.0"
            rows = [r for r in rollups if r.resolution == resolution and r.scope_key == key]
            assert sum(r.handoffs for r in rows) == handoffs, (resolution, agent)
            assert abs(sum(r.value_usd for r in rows) - value) < 1e-6, (resolution, agent)
        glob = [r for r in rollups if r.resolution == resolution and r.scope_key == "global"]
        assert sum(r.handoffs for r in glob) == sum(h for h, _ in truth.values())
    assert sum(h for h, _ in truth.values()) > 50  # the population has hand-offs to count


def test_merging_rollups_adds_handoffs_and_value() -> None:
    start = T0
    parts = [
        Rollup(
            resolution="1s",
            window_start=start + timedelta(seconds=s),
            window_end=start + timedelta(seconds=s + 1),
            scope_kind=ScopeKind.GLOBAL,
            scope_key="global",
            handoffs=s,
            value_usd=0.1 * s,
        )
        for s in range(1, 4)
    ]
    merged = merge_rollups(parts, "1m")
    assert merged.handoffs == 6
    assert abs(merged.value_usd - 0.6) < 1e-9


def test_a_cell_from_an_older_changelog_has_no_handoffs() -> None:
    cell = Cell(Scope(ScopeKind.GLOBAL, "global"))
    older = cell.to_json()
    older["figures"] = {"count": 3}  # written before handoffs/value_nusd existed
    restored = Cell.from_json(older)
    assert restored.f[-2:] == [0, 0]
