"""Rollups sum the events' ``redactions`` per scope, at every resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agentstream.core.config import RollupSettings
from agentstream.processors.rollups import RollupAggregator
from agentstream.processors.rollups._cells import Cell, Scope
from agentstream.schemas import (
    AgentState,
    CallStatus,
    Decision,
    ModelCall,
    ReviewDecision,
    Rollup,
    ScopeKind,
    StateTransition,
    ToolCall,
)

T0 = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
FAR = int((T0 + timedelta(days=1)).timestamp() * 1_000_000)


def ids(tenant: str = "acme") -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "user_id": "u",
        "agent_id": "planner",
        "agent_version": "1.0",
        "run_id": "r",
    }


def test_redactions_are_summed_per_scope_at_every_resolution() -> None:
    agg = RollupAggregator(RollupSettings(allowed_lateness_s=1))
    at = T0 + timedelta(seconds=5)
    agg.add(
        ToolCall(
            **ids(),
            tool="mail",
            status=CallStatus.SUCCESS,
            latency_ms=5.0,
            event_time=at,
            redactions={"email": 2},
        )
    )
    agg.add(
        ModelCall(
            **ids(),
            model="m",
            provider="p",
            latency_ms=1.0,
            status=CallStatus.SUCCESS,
            event_time=at,
            redactions={"api_key": 1},
        )
    )
    agg.add(
        StateTransition(
            **ids(),
            to_state=AgentState.INIT,
            event_time=at + timedelta(seconds=1),
            redactions={"email": 1},
        )
    )
    agg.add(
        ReviewDecision(
            **ids("globex"),
            reviewer="rv",
            decision=Decision.APPROVED,
            event_time=at,
            redactions={"phone": 3},
        )
    )
    agg.add(
        ToolCall(**ids(), tool="search", status=CallStatus.SUCCESS, latency_ms=5.0, event_time=at)
    )
    rollups = agg.advance(FAR)

    def pick(resolution: str, key: str) -> list[Rollup]:
        return [r for r in rollups if r.resolution == resolution and r.scope_key == key]

    for resolution in ("1s", "1m", "1h"):
        total: dict[str, int] = {}
        for r in pick(resolution, "global"):
            for kind, n in r.redactions.items():
                total[kind] = total.get(kind, 0) + n
        assert total == {"email": 3, "api_key": 1, "phone": 3}, resolution
    [acme_1m] = pick("1m", "tenant=acme")
    assert acme_1m.redactions == {"api_key": 1, "email": 3}
    [globex_1m] = pick("1m", "tenant=globex")
    assert globex_1m.redactions == {"phone": 3}
    [mail] = pick("1m", "tenant=acme/tool=mail")
    assert mail.redactions == {"email": 2}
    [search] = pick("1m", "tenant=acme/tool=search")
    assert search.redactions == {}


def test_a_cell_keeps_its_redactions_through_the_changelog() -> None:
    cell = Cell(Scope(ScopeKind.GLOBAL, "global"))
    cell.redactions = {"card": 2}
    restored = Cell.from_json(cell.to_json())
    assert restored.redactions == {"card": 2}
    older = cell.to_json()
    del older["redactions"]  # a changelog entry written before the field existed
    assert Cell.from_json(older).redactions == {}
    restored.merge(cell)
    assert restored.redactions == {"card": 4}
