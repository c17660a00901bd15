"""The evaluator over sequences of 1-minute rollups: fire once, resolve once, survive restarts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstream.processors.alerts import (
    AlertEvaluator,
    RuleSet,
    RuleState,
    evaluate,
    expire,
    load_rules,
    parse_rules,
    state_key,
)
from agentstream.schemas import Alert, AlertState, ContractError, Rollup, ScopeKind

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

PLANNER = (ScopeKind.AGENT, "agent=planner@1.0", {"agent_id": "planner", "agent_version": "1.0"})
CODER = (ScopeKind.AGENT, "agent=coder@2.1", {"agent_id": "coder", "agent_version": "2.1"})
SEARCH = (ScopeKind.TOOL, "tool=search", {"tool": "search"})
LOOKUP = (ScopeKind.TOOL, "tool=lookup", {"tool": "lookup"})
Scope = tuple[ScopeKind, str, dict[str, str]]


def rollup(
    scope: Scope, minute: int, *, calls: int = 200, errors: int = 0, **figures: Any
) -> Rollup:
    kind, key, ids = scope
    start = T0 + minute * MINUTE
    return Rollup(
        resolution="1m",
        window_start=start,
        window_end=start + MINUTE,
        scope_kind=kind,
        scope_key=key,
        count=calls,
        error=errors,
        success=calls - errors,
        computed_at=start + MINUTE + timedelta(seconds=5),
        **ids,
        **figures,
    )


def traffic(error_pct_by_minute: Sequence[float], scopes: Iterable[Scope]) -> list[Rollup]:
    """200 calls per minute per scope at the given error percentage."""
    out = []
    for minute, pct in enumerate(error_pct_by_minute):
        for scope in scopes:
            out.append(rollup(scope, minute, calls=200, errors=round(200 * pct / 100)))
    return out


def run(evaluator: AlertEvaluator, rollups: Iterable[Rollup]) -> list[Alert]:
    alerts: list[Alert] = []
    for r in rollups:
        alerts += evaluator.process(r)
    return alerts


def summary(alerts: Iterable[Alert]) -> list[tuple[str, str, str, int]]:
    """(rule, scope, state, window minute) of each alert."""
    return [
        (a.rule_id, a.scope_key, a.state.value, int((a.window_start - T0) / MINUTE)) for a in alerts
    ]


def one_rule(**fields: Any) -> RuleSet:
    rule = {
        "id": "r",
        "metric": "error_rate",
        "scope": "per agent",
        "threshold": "5%",
        "min_samples": 20,
        "cooldown": "5m",
        **fields,
    }
    return parse_rules({"rules": [rule]})


# -- the acceptance scenarios with the default rules ---------------------------------------


def test_one_percent_errors_fire_nothing() -> None:
    evaluator = AlertEvaluator(load_rules())
    alerts = run(evaluator, traffic([1.0] * 30, [PLANNER, CODER, SEARCH, LOOKUP]))
    assert alerts == []
    assert dict(evaluator.store) == {}  # steady traffic stores nothing


def test_ten_percent_for_two_minutes_fires_once_per_scope_then_resolves_once() -> None:
    evaluator = AlertEvaluator(load_rules())
    # minutes 0-2 healthy, 3-4 at 10 % errors on planner + search only, 5-14 healthy
    bad = traffic([1.0] * 3 + [10.0] * 2 + [1.0] * 10, [PLANNER, SEARCH])
    good = traffic([1.0] * 15, [CODER, LOOKUP])
    alerts = run(evaluator, sorted(bad + good, key=lambda r: (r.window_start, r.scope_key)))
    assert sorted(summary(alerts)) == sorted(
        [
            ("agent-error-rate", "agent=planner@1.0", "FIRING", 3),
            ("tool-error-rate", "tool=search", "FIRING", 3),
            ("agent-error-rate", "agent=planner@1.0", "RESOLVED", 5),
            ("tool-error-rate", "tool=search", "RESOLVED", 5),
        ]
    )
    firing = next(a for a in alerts if a.state == AlertState.FIRING)
    assert firing.value == pytest.approx(0.1)
    assert (firing.threshold, firing.comparator, firing.metric) == (0.05, ">", "error_rate")
    assert firing.channels == ("log", "webhook", "slack")
    assert "10%" in firing.message
    assert "5%" in firing.message
    assert len({a.alert_id for a in alerts}) == 4
    assert evaluator.state("agent-error-rate", "agent=planner@1.0").status == "RESOLVED"


def test_p95_above_ten_seconds_fires_its_own_rule() -> None:
    evaluator = AlertEvaluator(load_rules())
    slow = [
        rollup(PLANNER, m, calls=100, errors=1, latency_p95=p95)
        for m, p95 in enumerate([800.0, 12_500.0, 11_000.0, 900.0])
    ]
    alerts = run(evaluator, slow)
    assert summary(alerts) == [
        ("agent-p95-latency", "agent=planner@1.0", "FIRING", 1),
        ("agent-p95-latency", "agent=planner@1.0", "RESOLVED", 3),
    ]
    assert alerts[0].value == 12_500.0
    assert "12,500 ms" in alerts[0].message


# -- min samples, for, cooldown, resolve_for -----------------------------------------------


def test_min_samples_is_respected() -> None:
    evaluator = AlertEvaluator(one_rule())
    quiet = [
        rollup(PLANNER, 0, calls=1, errors=1),  # 100 % of 1 call
        rollup(PLANNER, 1, calls=19, errors=19),  # 100 % of 19 calls, min is 20
        rollup(PLANNER, 2, calls=0, errors=0),  # no calls at all
    ]
    assert run(evaluator, quiet) == []
    assert summary(run(evaluator, [rollup(PLANNER, 3, calls=20, errors=2)])) == [
        ("r", "agent=planner@1.0", "FIRING", 3)
    ]


def test_for_needs_consecutive_windows() -> None:
    evaluator = AlertEvaluator(one_rule(**{"for": 2}))
    pattern = [
        rollup(PLANNER, 0, errors=40),
        rollup(PLANNER, 1, errors=0),  # streak broken
        rollup(PLANNER, 2, errors=40),
        rollup(PLANNER, 4, errors=40),  # minute 3 missing: not consecutive
    ]
    assert run(evaluator, pattern) == []
    assert evaluator.state("r", PLANNER[1]).status == "PENDING"
    fired = run(evaluator, [rollup(PLANNER, 5, errors=40)])
    assert summary(fired) == [("r", "agent=planner@1.0", "FIRING", 5)]
    assert "2 consecutive 1m window(s)" in fired[0].message


def test_cooldown_holds_back_a_repeat() -> None:
    evaluator = AlertEvaluator(one_rule(cooldown="5m"))
    errors = [40, 0, 40, 40, 40, 40, 40, 0]  # fires m0, resolves m1, breaches again m2..m6
    alerts = run(evaluator, [rollup(PLANNER, m, errors=e) for m, e in enumerate(errors)])
    # the second FIRING waits until 5 min of event time after the first (end m0 → end m5)
    assert summary(alerts) == [
        ("r", "agent=planner@1.0", "FIRING", 0),
        ("r", "agent=planner@1.0", "RESOLVED", 1),
        ("r", "agent=planner@1.0", "FIRING", 5),
        ("r", "agent=planner@1.0", "RESOLVED", 7),
    ]


def test_a_blip_inside_the_cooldown_stays_silent() -> None:
    evaluator = AlertEvaluator(one_rule(cooldown="10m"))
    errors = [40, 0, 40, 0, 0]
    alerts = run(evaluator, [rollup(PLANNER, m, errors=e) for m, e in enumerate(errors)])
    assert [a.state.value for a in alerts] == ["FIRING", "RESOLVED"]


def test_continuous_incident_fires_once() -> None:
    evaluator = AlertEvaluator(one_rule(cooldown="1m"))
    alerts = run(evaluator, [rollup(PLANNER, m, errors=40) for m in range(30)])
    assert summary(alerts) == [("r", "agent=planner@1.0", "FIRING", 0)]


def test_resolve_for_needs_clear_windows() -> None:
    evaluator = AlertEvaluator(one_rule(resolve_for=2))
    errors = [40, 0, 40, 0, 0]
    alerts = run(evaluator, [rollup(PLANNER, m, errors=e) for m, e in enumerate(errors)])
    assert summary(alerts) == [
        ("r", "agent=planner@1.0", "FIRING", 0),
        ("r", "agent=planner@1.0", "RESOLVED", 4),
    ]


def test_lost_traffic_resolves_for_lack_of_data() -> None:
    evaluator = AlertEvaluator(one_rule())
    alerts = run(evaluator, [rollup(PLANNER, 0, errors=40), rollup(PLANNER, 1, calls=3, errors=3)])
    assert [a.state for a in alerts] == [AlertState.FIRING, AlertState.RESOLVED]
    assert "not enough data (3 calls < 20)" in alerts[1].message


def test_other_comparators_and_filters() -> None:
    rules = one_rule(
        metric="completion_rate", comparator="<", threshold=0.9, min_samples=10, scope="per agent"
    )
    evaluator = AlertEvaluator(rules)
    ok = rollup(PLANNER, 0, runs_completed=19, runs_failed=1)
    bad = rollup(PLANNER, 1, runs_completed=8, runs_failed=4)
    tool = rollup(SEARCH, 1, runs_completed=0, runs_failed=40)  # other scope kind: not read
    assert summary(run(evaluator, [ok, bad, tool])) == [("r", "agent=planner@1.0", "FIRING", 1)]


# -- restarts: state through JSON, replays -------------------------------------------------


def incident() -> list[Rollup]:
    pct = [1.0] * 2 + [10.0] * 3 + [1.0] * 3 + [10.0] * 8 + [1.0] * 2
    return traffic(pct, [PLANNER, SEARCH])


def eager_rules() -> RuleSet:
    """Fire on one window, no cooldown: any replayed transition would show as a duplicate."""
    return parse_rules(
        {
            "defaults": {"metric": "error_rate", "threshold": "5%", "cooldown": 0},
            "rules": [
                {"id": "agent", "scope": "per agent"},
                {"id": "tool", "scope": "per tool"},
            ],
        }
    )


@pytest.mark.parametrize("make_rules", [load_rules, eager_rules], ids=["defaults", "eager"])
def test_state_round_trips_through_json_mid_incident(make_rules: Any) -> None:
    rollups = incident()
    reference = run(AlertEvaluator(make_rules()), rollups)
    assert [a.state.value for a in reference].count("FIRING") == 4  # m2 and m8, both scopes

    for restart_at in range(1, len(rollups)):
        for redelivered in range(4):  # at-least-once: rollups before the crash come again
            store: dict[str, Any] = {}
            got = run(AlertEvaluator(make_rules(), store), rollups[:restart_at])
            saved = json.loads(json.dumps(store))  # what the changelog keeps (JSON)
            again = max(0, restart_at - redelivered)
            got += run(AlertEvaluator(make_rules(), saved), rollups[again:])
            assert got == reference, (restart_at, redelivered)


def test_without_a_horizon_replayed_and_late_windows_are_ignored() -> None:
    rule = one_rule()["r"]
    state, alerts = evaluate(rule, None, rollup(PLANNER, 0, errors=40))
    assert len(alerts) == 1
    again = evaluate(rule, state, rollup(PLANNER, 0, errors=40))
    assert again == (state, ())
    revised = evaluate(rule, state, rollup(PLANNER, 0, errors=0))  # re-emitted window
    assert revised.alerts == ()


def test_alerts_are_deterministic() -> None:
    rule = one_rule()["r"]
    (a,) = evaluate(rule, None, rollup(PLANNER, 0, errors=40)).alerts
    # the same window recomputed later (a restart): same alert
    recomputed = rollup(PLANNER, 0, errors=40).model_copy(update={"computed_at": T0 + 9 * MINUTE})
    (b,) = evaluate(rule, None, recomputed).alerts
    assert a == b
    assert a.fired_at == T0 + MINUTE  # the window's end


def test_state_dict_is_plain_json_and_checked() -> None:
    rule = one_rule()["r"]
    state, _ = evaluate(rule, None, rollup(PLANNER, 0, errors=40))
    data = state.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert RuleState.from_dict(data) == state
    with pytest.raises(ContractError, match="streak"):
        RuleState.from_dict({**data, "streak": -1})
    with pytest.raises(ContractError, match="status"):
        RuleState.from_dict({**data, "status": "ON_FIRE"})
    with pytest.raises(ContractError, match="version"):
        RuleState.from_dict({**data, "v": 99})
    with pytest.raises(ValueError, match="passed for"):
        evaluate(rule, data, rollup(CODER, 1))


def test_stale_firing_alert_expires_only_when_asked() -> None:
    rules = one_rule(stale_after="10m")
    evaluator = AlertEvaluator(rules, {})
    run(evaluator, [rollup(PLANNER, 0, errors=40)])
    assert evaluator.expire(T0 + 5 * MINUTE) == []
    resolved = evaluator.expire(T0 + 12 * MINUTE)
    assert [(a.state, a.scope_key) for a in resolved] == [(AlertState.RESOLVED, PLANNER[1])]
    assert "no 1m rollup since" in resolved[0].message
    assert evaluator.expire(T0 + 20 * MINUTE) == []  # resolved once
    never = one_rule()["r"]
    fired = evaluate(never, None, rollup(PLANNER, 0, errors=40)).state
    assert expire(never, fired, T0 + 1000 * MINUTE).alerts == ()


def test_state_key_and_idle_pruning() -> None:
    evaluator = AlertEvaluator(one_rule(**{"for": 2}))
    run(evaluator, [rollup(PLANNER, 0, errors=40)])
    assert list(evaluator.store) == [state_key("r", PLANNER[1])]
    run(evaluator, [rollup(PLANNER, 1, errors=0)])
    assert dict(evaluator.store) == {}  # pending cleared, nothing ever fired
