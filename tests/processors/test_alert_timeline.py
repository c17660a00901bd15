"""The evaluator on corrected windows (pure logic): corrections fire and resolve, an episode
is paged once, the cooldown holds between notifications, the state survives JSON."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from agentstream.processors.alerts import AlertEvaluator, RuleState, parse_rules, state_key
from agentstream.schemas import Alert, Rollup, ScopeKind

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
KEY = "agent=planner@1.0"
HORIZON_S = 600.0


def rollup(minute: int, errors: int, calls: int = 100) -> Rollup:
    start = T0 + minute * MINUTE
    return Rollup(
        resolution="1m",
        window_start=start,
        window_end=start + MINUTE,
        scope_kind=ScopeKind.AGENT,
        scope_key=KEY,
        agent_id="planner",
        agent_version="1.0",
        count=calls,
        error=errors,
        success=calls - errors,
    )


def evaluator(store: dict[str, Any] | None = None, **fields: Any) -> AlertEvaluator:
    rule = {
        "id": "r",
        "metric": "error_rate",
        "scope": "per agent",
        "threshold": "5%",
        "min_samples": 20,
        "cooldown": 0,
        **fields,
    }
    return AlertEvaluator(parse_rules({"rules": [rule]}, horizon_s=HORIZON_S), store)


def feed(ev: AlertEvaluator, rollups: Iterable[Rollup]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for r in rollups:
        out += [(a.state.value, (a.window_start - T0) // MINUTE) for a in ev.process(r)]
    return out


def test_a_correction_of_the_newest_window_fires_and_another_resolves() -> None:
    ev = evaluator()
    assert feed(ev, [rollup(0, 1), rollup(1, 2)]) == []
    assert feed(ev, [rollup(1, 9)]) == [("FIRING", 1)]  # late errors
    assert feed(ev, [rollup(1, 9)]) == []  # the same version again
    assert feed(ev, [rollup(1, 4)]) == [("RESOLVED", 1)]  # late successes (or a recount)
    assert feed(ev, [rollup(1, 9)]) == []  # the same episode is never paged twice
    assert feed(ev, [rollup(2, 9)]) == [("FIRING", 2)]  # a new one is


def test_a_past_episode_found_by_a_correction_is_sent_whole() -> None:
    ev = evaluator()
    assert feed(ev, [rollup(m, 1) for m in range(4)]) == []
    # minute 1 turns out bad after minutes 2 and 3 closed clean
    assert feed(ev, [rollup(1, 9)]) == [("FIRING", 1), ("RESOLVED", 2)]


def test_a_correction_that_moves_an_episode_earlier_sends_nothing() -> None:
    ev = evaluator()
    assert feed(ev, [rollup(0, 1), rollup(1, 9)]) == [("FIRING", 1)]
    assert feed(ev, [rollup(0, 9)]) == []  # the incident began a minute earlier: same episode
    assert feed(ev, [rollup(2, 1)]) == [("RESOLVED", 2)]


def test_for_counts_windows_in_event_time_whatever_the_arrival_order() -> None:
    two: dict[str, Any] = {"for": 2}
    ev = evaluator(**two)
    assert feed(ev, [rollup(0, 1), rollup(1, 1), rollup(2, 9)]) == []
    assert feed(ev, [rollup(1, 9)]) == [("FIRING", 2)]  # 1 and 2 breach: two in a row
    assert feed(ev, [rollup(1, 1)]) == [("RESOLVED", 2)]  # taken back: only one breach


def test_cooldown_holds_between_notifications_after_a_retraction() -> None:
    ev = evaluator(cooldown="5m")
    assert feed(ev, [rollup(0, 9)]) == [("FIRING", 0)]
    assert feed(ev, [rollup(0, 1)]) == [("RESOLVED", 0)]
    # a new breach from minute 2: the last FIRING was sent for the window ending at minute 1
    assert feed(ev, [rollup(m, 9) for m in range(2, 5)]) == []
    assert feed(ev, [rollup(5, 9)]) == [("FIRING", 5)]  # 5 min after the last FIRING


def test_windows_past_the_horizon_are_final() -> None:
    ev = evaluator()
    feed(ev, [rollup(m, 1) for m in range(30)])
    state = ev.state("r", KEY)
    assert len(state.windows) == int(HORIZON_S // 60)  # the rest folded into the base
    assert feed(ev, [rollup(5, 50)]) == []  # older than the horizon: cannot change
    assert feed(ev, [rollup(25, 50)]) == [("FIRING", 25), ("RESOLVED", 26)]


def test_a_version_1_state_is_read_as_a_base() -> None:
    v1 = {
        "v": 1,
        "rule_id": "r",
        "scope_key": KEY,
        "status": "FIRING",
        "streak": 1,
        "clear_streak": 0,
        "last_window_end": (T0 + MINUTE).isoformat(),
        "last_value": 0.09,
        "fired_window_end": (T0 + MINUTE).isoformat(),
        "fired_at": (T0 + MINUTE).isoformat(),
        "fired_value": 0.09,
        "fired_alert_id": "a1",
    }
    state = RuleState.from_dict(v1)
    assert state.paging
    assert state.windows == ()
    ev = evaluator({state_key("r", KEY): v1})
    assert feed(ev, [rollup(0, 1)]) == []  # before the v1 state's last window: final
    assert feed(ev, [rollup(1, 9), rollup(2, 1)]) == [("RESOLVED", 2)]


def _random_versions(seed: int) -> list[Rollup]:
    """Windows in event-time order, each then corrected up to three times at random."""
    rng = random.Random(seed)
    out: list[Rollup] = []
    for minute in range(30):
        out.append(rollup(minute, rng.choice((0, 1, 3, 8, 12))))
        for _ in range(rng.randrange(4)):
            back = max(0, minute - rng.randrange(8))
            out.append(rollup(back, rng.choice((0, 2, 6, 20))))
    return out


def _invariants(alerts: list[Alert]) -> None:
    paging = False
    for a in alerts:
        if a.state.value == "FIRING":
            assert not paging, "a second FIRING before the RESOLVED"
            paging = True
        else:
            assert paging, "a RESOLVED without a FIRING"
            paging = False
    ids = [a.alert_id for a in alerts]
    assert len(ids) == len(set(ids))


def test_random_corrections_keep_the_invariants_and_survive_restarts() -> None:
    for seed in range(6):
        versions = _random_versions(seed)
        variants: list[dict[str, Any]] = [{}, {"for": 2, "cooldown": "3m"}, {"resolve_for": 2}]
        for fields in variants:
            plain = evaluator(**fields)
            reference = [a for r in versions for a in plain.process(r)]
            _invariants(reference)
            # a restart after every rollup: the state through JSON (the changelog)
            store: dict[str, Any] = {}
            restarted: list[Alert] = []
            for r in versions:
                ev = evaluator(json.loads(json.dumps(store)), **fields)
                restarted += ev.process(r)
                store = dict(ev.store)
            assert restarted == reference, (seed, fields)
            # every version delivered twice (a replay): nothing more
            twice = evaluator(**fields)
            assert [a for r in versions for a in twice.process(r) + twice.process(r)] == reference
