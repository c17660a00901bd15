"""The lifecycle state machine: every pair of states, duplicates, budgets, timers.

Ground truth is written out here (the allowed pairs, the expected reasons), not
taken from the module under test.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from agentstream.core.config import LifecycleSettings
from agentstream.processors import EventClock, from_us, to_us
from agentstream.processors.lifecycle import (
    Accepted,
    DeadlineIndex,
    Duplicate,
    Rejected,
    RunState,
    TimeoutTracker,
    apply,
    expired,
    observe_tool_call,
    overdue,
)
from agentstream.schemas import AgentState, StateTransition

S = AgentState
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
US = 1_000_000

SETTINGS = LifecycleSettings(
    init_budget_s=30,
    preparing_budget_s=60,
    executing_budget_s=600,
    reviewing_budget_s=300,
    executing_budget_by_tool_s={"search": 20, "build": 900},
    timeout_grace_s=0,
    idle_after_s=2,
    dedup_ids_per_run=4,
    terminal_retention_s=3600,
)

# written independently of processors.lifecycle
ALLOWED = {
    ("INIT", "PREPARING"),
    ("PREPARING", "EXECUTING"),
    ("EXECUTING", "REVIEWING"),
    ("REVIEWING", "COMPLETED"),
    ("PREPARING", "FAILED"),
    ("EXECUTING", "FAILED"),
    ("REVIEWING", "FAILED"),
}
ROUTE = {
    "INIT": [],
    "PREPARING": ["PREPARING"],
    "EXECUTING": ["PREPARING", "EXECUTING"],
    "REVIEWING": ["PREPARING", "EXECUTING", "REVIEWING"],
    "COMPLETED": ["PREPARING", "EXECUTING", "REVIEWING", "COMPLETED"],
    "FAILED": ["PREPARING", "FAILED"],
}
FAILS_ONLY = "a run fails only from PREPARING, EXECUTING or REVIEWING"
REASONS = {
    ("INIT", "INIT"): "run already started (state INIT); INIT not allowed",
    ("INIT", "EXECUTING"): "INIT→EXECUTING skips PREPARING",
    ("INIT", "REVIEWING"): "INIT→REVIEWING skips PREPARING, EXECUTING",
    ("INIT", "COMPLETED"): "INIT→COMPLETED skips PREPARING, EXECUTING, REVIEWING",
    ("INIT", "FAILED"): f"INIT→FAILED not allowed: {FAILS_ONLY}",
    ("PREPARING", "INIT"): "run already started (state PREPARING); INIT not allowed",
    ("PREPARING", "PREPARING"): "PREPARING→PREPARING is not a move (the run is already PREPARING)",
    ("PREPARING", "REVIEWING"): "PREPARING→REVIEWING skips EXECUTING",
    ("PREPARING", "COMPLETED"): "PREPARING→COMPLETED skips EXECUTING, REVIEWING",
    ("EXECUTING", "INIT"): "run already started (state EXECUTING); INIT not allowed",
    ("EXECUTING", "PREPARING"): "EXECUTING→PREPARING goes backwards",
    ("EXECUTING", "EXECUTING"): "EXECUTING→EXECUTING is not a move (the run is already EXECUTING)",
    ("EXECUTING", "COMPLETED"): "EXECUTING→COMPLETED skips REVIEWING",
    ("REVIEWING", "INIT"): "run already started (state REVIEWING); INIT not allowed",
    ("REVIEWING", "PREPARING"): "REVIEWING→PREPARING goes backwards",
    ("REVIEWING", "EXECUTING"): "REVIEWING→EXECUTING goes backwards",
    ("REVIEWING", "REVIEWING"): "REVIEWING→REVIEWING is not a move (the run is already REVIEWING)",
}
for _end in ("COMPLETED", "FAILED"):
    for _to in S:
        REASONS[(_end, _to.value)] = f"run is {_end} (terminal); {_to.value} not allowed"

ALL_PAIRS = [(a.value, b.value) for a in S for b in S]


def tr(
    source: str | None,
    target: str,
    at_s: float,
    run_id: str = "r1",
    event_id: str | None = None,
) -> StateTransition:
    extra = {"event_id": event_id} if event_id else {}
    return StateTransition(
        tenant_id="acme",
        user_id="u1",
        agent_id="planner",
        agent_version="1.4.0",
        run_id=run_id,
        trace_id="trace-1",
        from_state=S(source) if source else None,
        to_state=S(target),
        event_time=T0 + timedelta(seconds=at_s),
        **extra,
    )


def accepted(out: object) -> Accepted:
    assert isinstance(out, Accepted), out
    return out


def run_to(state: str, run_id: str = "r1", step_s: float = 1.0) -> tuple[RunState, float]:
    """A run driven to ``state`` by valid events, one every ``step_s``; returns it and the time."""
    run = accepted(apply(None, tr(None, "INIT", 0, run_id), SETTINGS)).state
    current, t = "INIT", 0.0
    for target in ROUTE[state]:
        t += step_s
        run = accepted(apply(run, tr(current, target, t, run_id), SETTINGS)).state
        current = target
    return run, t


# ---------------------------------------------------------------- every pair


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS)
def test_every_pair_of_states(source: str, target: str) -> None:
    run, t = run_to(source)
    before = json.loads(json.dumps(run))
    out = apply(run, tr(source, target, t + 2.5), SETTINGS)
    if (source, target) in ALLOWED:
        acc = accepted(out)
        assert acc.state["state"] == target
        assert acc.dwell_ms == 2500
        assert acc.transition.dwell_ms == 2500
        assert acc.transition.from_state == S(source)
        assert acc.state["entered_at"] == to_us(T0) + round((t + 2.5) * US)
    else:
        assert isinstance(out, Rejected), out
        assert out.reason == REASONS[(source, target)]
        assert out.timeout is None
        assert out.state is not None
        assert out.state["state"] == source
        assert out.state["entered_at"] == before["entered_at"]
        assert out.state["deadline"] == before["deadline"]
    assert run == before, "apply must not mutate its input"


def test_every_disallowed_pair_has_a_reason_and_all_pairs_are_covered() -> None:
    assert len(ALL_PAIRS) == 36
    assert {p for p in ALL_PAIRS if p not in ALLOWED} == set(REASONS)


@pytest.mark.parametrize("target", [s.value for s in S if s is not S.INIT])
def test_first_event_must_be_init(target: str) -> None:
    out = apply(None, tr(None, target, 0), SETTINGS)
    assert isinstance(out, Rejected)
    assert out.reason == f"run r1 has no INIT: first event is {target}"
    assert out.state is None


def test_first_init_must_have_no_from_state() -> None:
    out = apply(None, tr("PREPARING", "INIT", 0), SETTINGS)
    assert isinstance(out, Rejected)
    assert out.reason == "run r1's INIT must have no from_state (got PREPARING)"


def test_from_state_must_match_the_runs_state() -> None:
    run, t = run_to("EXECUTING")
    out = apply(run, tr("PREPARING", "EXECUTING", t + 1), SETTINGS)
    assert isinstance(out, Rejected)
    assert out.reason == "from_state PREPARING does not match the run's state EXECUTING"
    missing = apply(run, tr(None, "REVIEWING", t + 1), SETTINGS)
    assert isinstance(missing, Rejected)
    assert missing.reason == "from_state is missing; the run's state is EXECUTING"


def test_init_starts_the_run_with_its_context() -> None:
    acc = accepted(apply(None, tr(None, "INIT", 0), SETTINGS))
    assert acc.dwell_ms is None
    assert acc.transition.dwell_ms is None
    run = acc.state
    assert run["state"] == "INIT"
    assert (run["tenant_id"], run["agent_id"], run["agent_version"]) == ("acme", "planner", "1.4.0")
    assert run["deadline"] == to_us(T0) + 30 * US
    assert json.loads(json.dumps(run)) == run  # JSON-able, for the changelog


def test_dwell_never_negative_and_clock_never_goes_back() -> None:
    run, t = run_to("PREPARING")  # entered PREPARING at t=1
    acc = accepted(apply(run, tr("PREPARING", "EXECUTING", t - 0.5), SETTINGS))
    assert acc.dwell_ms == 0
    assert acc.state["entered_at"] == run["entered_at"]


# ---------------------------------------------------------------- duplicates


def test_duplicate_event_id_is_ignored() -> None:
    init = tr(None, "INIT", 0)
    run = accepted(apply(None, init, SETTINGS)).state
    assert apply(run, init, SETTINGS) == Duplicate(init.event_id)
    move = tr("INIT", "PREPARING", 1)
    run2 = accepted(apply(run, move, SETTINGS)).state
    assert apply(run2, move, SETTINGS) == Duplicate(move.event_id)


def test_duplicate_of_a_rejected_event_is_ignored_too() -> None:
    run, t = run_to("EXECUTING")
    bad = tr("EXECUTING", "COMPLETED", t + 1)
    out = apply(run, bad, SETTINGS)
    assert isinstance(out, Rejected)
    assert out.state is not None
    assert apply(out.state, bad, SETTINGS) == Duplicate(bad.event_id)


def test_dedup_memory_is_bounded() -> None:
    run, t = run_to("EXECUTING")
    first = tr("EXECUTING", "COMPLETED", t + 1)
    out = apply(run, first, SETTINGS)
    assert isinstance(out, Rejected)
    assert out.state is not None
    run = out.state
    for i in range(SETTINGS.dedup_ids_per_run):
        again = apply(run, tr("EXECUTING", "COMPLETED", t + 2 + i), SETTINGS)
        assert isinstance(again, Rejected)
        assert again.state is not None
        run = again.state
    assert len(run["recent_ids"]) == SETTINGS.dedup_ids_per_run
    # the first id was forgotten: it is judged again (and rejected again)
    assert isinstance(apply(run, first, SETTINGS), Rejected)


# ---------------------------------------------------------------- budgets


@pytest.mark.parametrize(
    ("state", "budget_s", "reason"),
    [
        ("INIT", 30, "INIT exceeded its 30 s budget"),
        ("PREPARING", 60, "PREPARING exceeded its 60 s budget"),
        ("EXECUTING", 600, "EXECUTING exceeded its 600 s budget"),
        ("REVIEWING", 300, "REVIEWING exceeded its 300 s budget"),
    ],
)
def test_overdue_synthesizes_a_timeout_failure(state: str, budget_s: int, reason: str) -> None:
    run, t = run_to(state)
    deadline = T0 + timedelta(seconds=t + budget_s)
    assert overdue(run, to_us(deadline), SETTINGS) is None  # exactly at the deadline: not yet
    acc = overdue(run, to_us(deadline) + 1, SETTINGS)
    assert acc is not None
    failure = acc.transition
    assert (failure.from_state, failure.to_state) == (S(state), S.FAILED)
    assert failure.error_category == "TIMEOUT"
    assert failure.synthesized is True
    assert failure.reason == reason
    assert failure.event_time == deadline
    assert failure.dwell_ms == acc.dwell_ms == budget_s * 1000
    assert (failure.run_id, failure.tenant_id, failure.trace_id) == ("r1", "acme", "trace-1")
    assert acc.state["state"] == "FAILED"
    assert failure.event_id in acc.state["recent_ids"]
    # deterministic: the same state gives the same record (replays dedup in the sink)
    again = overdue(run, to_us(deadline) + 10 * US, SETTINGS)
    assert again is not None
    assert again.transition == failure


@pytest.mark.parametrize("state", ["COMPLETED", "FAILED"])
def test_finished_runs_never_time_out_but_expire(state: str) -> None:
    run, t = run_to(state)
    ended = to_us(T0) + round(t * US)
    assert overdue(run, ended + 10**12, SETTINGS) is None
    assert not expired(run, ended + 3600 * US)
    assert expired(run, ended + 3600 * US + 1)


def test_executing_budget_per_tool() -> None:
    run, t = run_to("EXECUTING")  # entered EXECUTING at t=2
    start = to_us(T0) + round(t * US)
    assert run["deadline"] == start + 600 * US  # default budget
    call = start + 10 * US
    after_search = observe_tool_call(run, "search", call, SETTINGS)
    assert after_search is not None
    assert after_search["deadline"] == call + 20 * US
    acc = overdue(after_search, call + 20 * US + 1, SETTINGS)
    assert acc is not None
    assert acc.transition.reason == "EXECUTING exceeded its 20 s budget (after tool search)"
    assert acc.dwell_ms == 30_000  # from entering EXECUTING to the deadline
    # a slow tool gets its own, longer budget; an unlisted tool the default
    after_build = observe_tool_call(after_search, "build", call + 15 * US, SETTINGS)
    assert after_build is not None
    assert after_build["deadline"] == call + 915 * US
    after_other = observe_tool_call(after_build, "fetch", call + 16 * US, SETTINGS)
    assert after_other is not None
    assert after_other["deadline"] == call + 616 * US


def test_tool_calls_outside_executing_or_out_of_order_change_nothing() -> None:
    run, _ = run_to("PREPARING")
    assert observe_tool_call(run, "search", to_us(T0) + 50 * US, SETTINGS) is run
    assert observe_tool_call(None, "search", to_us(T0), SETTINGS) is None
    executing, _t = run_to("EXECUTING")
    later = observe_tool_call(executing, "search", to_us(T0) + 40 * US, SETTINGS)
    assert later is not None
    assert observe_tool_call(later, "build", to_us(T0) + 30 * US, SETTINGS) is later
    assert observe_tool_call(later, "search", to_us(T0) + 40 * US, SETTINGS) is later


def test_grace_delays_the_timeout_but_not_its_time() -> None:
    settings = SETTINGS.model_copy(update={"timeout_grace_s": 5.0})
    run, t = run_to("REVIEWING")
    deadline = to_us(T0) + round((t + 300) * US)
    assert overdue(run, deadline + 5 * US, settings) is None
    acc = overdue(run, deadline + 5 * US + 1, settings)
    assert acc is not None
    assert to_us(acc.transition.event_time) == deadline


def test_a_late_own_event_fails_the_run_first() -> None:
    run, t = run_to("REVIEWING")
    out = apply(run, tr("REVIEWING", "COMPLETED", t + 301), SETTINGS)
    assert isinstance(out, Rejected)
    assert out.reason == (
        "run timed out first (REVIEWING exceeded its 300 s budget); "
        "run is FAILED (terminal); COMPLETED not allowed"
    )
    assert out.timeout is not None
    assert out.timeout.transition.error_category == "TIMEOUT"
    assert out.state is not None
    assert out.state["state"] == "FAILED"
    assert out.timeout.transition.event_id in out.state["recent_ids"]
    # within the budget the same move is fine
    assert isinstance(apply(run, tr("REVIEWING", "COMPLETED", t + 300), SETTINGS), Accepted)


# ---------------------------------------------------------------- deadline index and tracker


def test_deadline_index_matches_a_naive_model() -> None:
    rng = random.Random(7)
    index = DeadlineIndex()
    model: dict[str, int] = {}
    popped: list[tuple[str, int]] = []
    expected: list[tuple[str, int]] = []
    for step in range(20_000):
        run_id = f"r{rng.randrange(300)}"
        roll = rng.random()
        if roll < 0.7:
            deadline = step + rng.randrange(1, 500)
            index.set(run_id, deadline)
            model[run_id] = deadline
        elif roll < 0.8:
            index.set(run_id, None)
            model.pop(run_id, None)
        else:
            due = sorted(((d, r) for r, d in model.items() if d <= step), key=lambda x: x)
            expected.extend((r, d) for d, r in due)
            for _, r in due:
                del model[r]
            popped.extend(index.pop_due(step))
        assert len(index) == len(model)
    assert popped == expected
    assert index.to_json() == model
    assert DeadlineIndex.from_json(index.to_json()).to_json() == model
    assert index.next_deadline() == (min(model.values()) if model else None)


def _sweep_all(tracker: TimeoutTracker, table: dict[str, RunState], wall: int) -> list[str]:
    sweep = tracker.sweep(table.get, wall)
    for acc in sweep.timeouts:
        table[acc.state["run_id"]] = acc.state
    for run_id in sweep.expired:
        del table[run_id]
    return [a.transition.run_id for a in sweep.timeouts]


def test_tracker_uses_event_time_while_events_flow() -> None:
    tracker = TimeoutTracker(SETTINGS)
    table: dict[str, RunState] = {}
    for run_id, state in (("a", "INIT"), ("b", "PREPARING"), ("c", "REVIEWING")):
        run, _ = run_to(state, run_id)
        table[run_id] = run
        tracker.track(run)
    base = to_us(T0)
    wall = base + 10**12  # a backlog: the wall clock is far ahead of the events
    tracker.observe(base + 29 * US, wall)
    assert _sweep_all(tracker, table, wall) == []  # the wall clock is ignored while busy
    tracker.observe(base + 31 * US, wall)
    assert _sweep_all(tracker, table, wall) == ["a"]  # INIT budget 30 s, entered at 0
    tracker.observe(base + 62 * US, wall)
    assert _sweep_all(tracker, table, wall) == ["b"]  # PREPARING 60 s, entered at 1
    assert table["a"]["state"] == table["b"]["state"] == "FAILED"
    assert table["c"]["state"] == "REVIEWING"
    assert tracker.index.get("a") == table["a"]["deadline"]  # now watched for expiry


def test_tracker_uses_the_wall_clock_when_idle_and_expires_finished_runs() -> None:
    tracker = TimeoutTracker(SETTINGS)
    table: dict[str, RunState] = {}
    run, _ = run_to("REVIEWING", "c")  # REVIEWING entered at 3 s
    table["c"] = run
    tracker.track(run)
    base = to_us(T0)
    tracker.observe(base + 10 * US, base + 10 * US)
    assert _sweep_all(tracker, table, base + 11 * US) == []
    # no event for longer than idle_after: the wall clock drives the timers
    assert _sweep_all(tracker, table, base + 304 * US) == ["c"]
    assert table["c"]["state"] == "FAILED"
    assert _sweep_all(tracker, table, base + 303 * US + 3600 * US) == []
    assert _sweep_all(tracker, table, base + 304 * US + 3600 * US) == []
    assert "c" not in table  # expired and deleted


def test_tracker_knows_the_earliest_deadline_of_a_live_run() -> None:
    # what a rollup stage keeps its windows from: the timeout of a live run is dated there
    tracker = TimeoutTracker(SETTINGS)
    table: dict[str, RunState] = {}
    for run_id, state in (("a", "INIT"), ("b", "PREPARING"), ("c", "COMPLETED")):
        run, _ = run_to(state, run_id)
        table[run_id] = run
        tracker.track(run)
    live = {r: table[r]["deadline"] for r in ("a", "b")}
    assert tracker.open_deadline() == min(live.values())
    rebuilt = TimeoutTracker.rebuild(SETTINGS, table.values())
    assert rebuilt.open_deadline() == min(live.values())
    assert _sweep_all(tracker, table, to_us(T0) + 10**12) == ["a", "b"]  # both timed out
    assert tracker.open_deadline() is None  # failed: no timeout left to keep a window for
    tracker.forget("c")
    run, _ = run_to("REVIEWING", "d")
    tracker.track(run)
    assert tracker.open_deadline() == run["deadline"]
    tracker.forget("d")
    assert tracker.open_deadline() is None


def test_tracker_state_round_trips_through_json() -> None:
    tracker = TimeoutTracker(SETTINGS)
    run, _ = run_to("EXECUTING")
    tracker.track(run)
    tracker.observe(to_us(T0) + 5 * US, to_us(T0) + 6 * US)
    saved = json.loads(json.dumps(tracker.to_json()))
    restored = TimeoutTracker(SETTINGS, saved)
    assert restored.to_json() == tracker.to_json()
    rebuilt = TimeoutTracker.rebuild(SETTINGS, [run], saved["clock"])
    assert rebuilt.to_json() == tracker.to_json()
    assert from_us(saved["deadlines"]["r1"]) == T0 + timedelta(seconds=602)


def test_event_clock_prefers_event_time_until_idle() -> None:
    clock = EventClock(idle_after_s=2)
    assert clock.now(500) == 500  # nothing seen yet: the wall clock
    clock.observe(100 * US, 1_000 * US)  # a backlog: events far behind the wall clock
    assert clock.now(1_001 * US) == 100 * US
    clock.observe(90 * US, 1_001 * US)  # an older event never moves the clock back
    assert clock.now(1_002 * US) == 100 * US
    assert clock.now(1_003 * US) == 1_003 * US  # idle for 2 s: the wall clock takes over
    clock.observe(2_000 * US, 1_004 * US)  # producers ahead of the worker's clock
    assert clock.now(1_010 * US) == 2_000 * US  # idle, but event time is ahead: keep it
    assert EventClock(2, json.loads(json.dumps(clock.to_json()))).now(1_010 * US) == 2_000 * US
