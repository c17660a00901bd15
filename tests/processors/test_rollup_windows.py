"""Rollups: generated traffic against a ground truth computed here, lateness, state, merges.

Quantiles: ddsketch's lower quantile (value at rank ``floor(q * (n - 1))`` of the
sorted latencies) must be within the relative accuracy of the exact one, and
equal to a ``ddsketch.DDSketch`` fed the raw latencies of the window directly
(which is what "1 min equals the merge of its 1 s windows, exactly" means).
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ddsketch import DDSketch

from agentstream.core.config import RollupSettings
from agentstream.processors import from_us, to_us
from agentstream.processors.rollups import (
    ADDED,
    DUPLICATE,
    TOO_LATE,
    LatencySketch,
    RollupAggregator,
    RollupEvent,
    merge_rollups,
)
from agentstream.schemas import (
    AgentState,
    CallStatus,
    Decision,
    ErrorClass,
    ModelCall,
    ReviewDecision,
    Rollup,
    ScopeKind,
    StateTransition,
    ToolCall,
)

ALPHA = 0.01
SETTINGS = RollupSettings(allowed_lateness_s=3, sketch_relative_accuracy=ALPHA)
T0 = datetime(2025, 1, 1, 10, 58, 30, tzinfo=UTC)  # traffic crosses a minute and an hour
STAMP = datetime(2025, 1, 2, tzinfo=UTC)
FAR = to_us(datetime(2030, 1, 1, tzinfo=UTC))
LENGTH_S = {"1s": 1, "1m": 60, "1h": 3600, "1d": 86_400}
#: the scope kinds the 1 d tier holds by default
DAILY_KINDS = {ScopeKind.TENANT, ScopeKind.AGENT}
QS = (0.5, 0.95, 0.99)

AGENTS = [("planner", "1.0"), ("planner", "1.1"), ("coder", "2.0")]
TENANTS = ["acme", "globex"]
TOOLS = ["search", "build", "fetch"]
OUTCOMES = [
    (CallStatus.SUCCESS, ErrorClass.NONE),
    (CallStatus.PARTIAL, ErrorClass.NONE),
    (CallStatus.PARTIAL, ErrorClass.RETRYABLE),
    (CallStatus.ERROR, ErrorClass.RETRYABLE),
    (CallStatus.ERROR, ErrorClass.NON_RETRYABLE),
    (CallStatus.ERROR, ErrorClass.TIMEOUT),
]
MOVES = [
    (None, AgentState.INIT),
    (AgentState.INIT, AgentState.PREPARING),
    (AgentState.EXECUTING, AgentState.REVIEWING),
    (AgentState.REVIEWING, AgentState.COMPLETED),
    (AgentState.EXECUTING, AgentState.FAILED),
]


def context(rng: random.Random, t: datetime) -> dict[str, Any]:
    agent, version = rng.choice(AGENTS)
    return {
        "tenant_id": rng.choice(TENANTS),
        "user_id": "u1",
        "agent_id": agent,
        "agent_version": version,
        "run_id": f"run-{rng.randrange(50)}",
        "event_time": t,
    }


def make_event(rng: random.Random, t: datetime) -> RollupEvent:
    ctx = context(rng, t)
    roll = rng.random()
    if roll < 0.7:
        status, error_class = rng.choice(OUTCOMES)
        latency = 0.0 if rng.random() < 0.01 else rng.lognormvariate(6, 1.2)
        return ToolCall(
            **ctx,
            tool=rng.choice(TOOLS),
            status=status,
            error_class=error_class,
            latency_ms=latency,
        )
    if roll < 0.85:
        return ModelCall(
            **ctx,
            model="m",
            provider="p",
            input_tokens=rng.randrange(5000),
            output_tokens=rng.randrange(800),
            cost_usd=rng.uniform(0, 0.05),
            latency_ms=10.0,
            status=CallStatus.SUCCESS,
        )
    if roll < 0.95:
        source, target = rng.choice(MOVES)
        return StateTransition(
            **ctx,
            from_state=source,
            to_state=target,
            dwell_ms=None if source is None else rng.randrange(100_000),
        )
    return ReviewDecision(**ctx, reviewer="rev", decision=rng.choice(list(Decision)))


def traffic(seed: int, n: int, span_s: float, jitter_s: float) -> list[RollupEvent]:
    """Events over ``span_s`` from T0, in arrival order: time order disturbed by < jitter."""
    rng = random.Random(seed)
    events = [make_event(rng, T0 + timedelta(seconds=rng.uniform(0, span_s))) for _ in range(n)]
    keyed = [
        (to_us(e.event_time) + rng.uniform(0, jitter_s * 1e6), i) for i, e in enumerate(events)
    ]
    return [events[i] for _, i in sorted(keyed)]


def scope_keys(ev: RollupEvent) -> list[tuple[ScopeKind, str]]:
    tenant = f"tenant={ev.tenant_id}"
    keys = [
        (ScopeKind.GLOBAL, "global"),
        (ScopeKind.TENANT, tenant),
        (ScopeKind.AGENT, f"{tenant}/agent={ev.agent_id}@{ev.agent_version}"),
    ]
    if isinstance(ev, ToolCall):
        keys.append((ScopeKind.TOOL, f"{tenant}/tool={ev.tool}"))
    return keys


@dataclass
class Truth:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    costs: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    state_ms: dict[AgentState, int] = field(default_factory=lambda: defaultdict(int))


def ground_truth(events: list[RollupEvent]) -> dict[tuple[str, int, str], Truth]:
    truth: dict[tuple[str, int, str], Truth] = defaultdict(Truth)
    for ev in events:
        t = to_us(ev.event_time)
        for resolution, length in LENGTH_S.items():
            start = t - t % (length * 1_000_000)
            for kind, key in scope_keys(ev):
                if resolution == "1d" and kind not in DAILY_KINDS:
                    continue
                g = truth[(resolution, start, key)]
                c = g.counts
                if isinstance(ev, ToolCall):
                    c["count"] += 1
                    c[ev.status.value.lower()] += 1
                    if ev.error_class is not ErrorClass.NONE:
                        c[ev.error_class.value.lower()] += 1
                    g.latencies.append(ev.latency_ms)
                elif isinstance(ev, ModelCall):
                    c["model_calls"] += 1
                    c["tokens_in"] += ev.input_tokens
                    c["tokens_out"] += ev.output_tokens
                    g.costs.append(ev.cost_usd)
                elif isinstance(ev, StateTransition):
                    if ev.to_state is AgentState.INIT:
                        c["runs_started"] += 1
                    if ev.to_state is AgentState.COMPLETED:
                        c["runs_completed"] += 1
                    if ev.to_state is AgentState.FAILED:
                        c["runs_failed"] += 1
                    if ev.from_state is not None and ev.dwell_ms:
                        g.state_ms[ev.from_state] += ev.dwell_ms
                else:
                    c["reviews"] += 1
                    if ev.decision is Decision.OVERRIDDEN:
                        c["overrides"] += 1
    return truth


COUNTED = [
    "count",
    "success",
    "partial",
    "error",
    "retryable",
    "non_retryable",
    "timeout",
    "late_events",
    "tokens_in",
    "tokens_out",
    "model_calls",
    "runs_started",
    "runs_completed",
    "runs_failed",
    "reviews",
    "overrides",
]


def run_all(
    events: list[RollupEvent], settings: RollupSettings = SETTINGS, every: int = 97
) -> list[Rollup]:
    agg = RollupAggregator(settings)
    out: list[Rollup] = []
    for i, ev in enumerate(events):
        agg.add(ev)
        if i % every == 0:
            out.extend(agg.advance(computed_at=STAMP))
    out.extend(agg.advance(FAR, computed_at=STAMP))
    return out


def by_key(rollups: list[Rollup]) -> dict[tuple[str, int, str], Rollup]:
    keyed: dict[tuple[str, int, str], Rollup] = {
        (r.resolution, to_us(r.window_start), r.scope_key): r for r in rollups
    }
    assert len(keyed) == len(rollups), "a window was emitted twice"
    return keyed


@pytest.fixture(scope="module")
def events() -> list[RollupEvent]:
    return traffic(seed=42, n=6000, span_s=180, jitter_s=2.0)


@pytest.fixture(scope="module")
def emitted(events: list[RollupEvent]) -> dict[tuple[str, int, str], Rollup]:
    return by_key(run_all(events))


def test_every_window_and_scope_matches_the_ground_truth(
    events: list[RollupEvent], emitted: dict[tuple[str, int, str], Rollup]
) -> None:
    truth = ground_truth(events)
    assert set(emitted) == set(truth)
    assert {r for r, _, _ in emitted} == {"1s", "1m", "1h", "1d"}
    assert {k[2] for k in emitted if k[0] == "1d"} == {
        key for ev in events for kind, key in scope_keys(ev) if kind in DAILY_KINDS
    }
    assert len([k for k in emitted if k[0] == "1h"]) >= 2 * 4  # two hours, several scopes
    for key, expected in truth.items():
        rollup = emitted[key]
        got = {name: getattr(rollup, name) for name in COUNTED}
        assert got == {name: expected.counts.get(name, 0) for name in COUNTED}, key
        assert math.isclose(rollup.cost_usd, math.fsum(expected.costs), abs_tol=1e-9 * 10_000)
        assert rollup.state_time_ms == dict(expected.state_ms)
        assert rollup.window_end - rollup.window_start == timedelta(seconds=LENGTH_S[key[0]])


def test_scope_fields(emitted: dict[tuple[str, int, str], Rollup]) -> None:
    for (_, _, key), rollup in emitted.items():
        if rollup.scope_kind is ScopeKind.GLOBAL:
            assert key == "global"
            assert rollup.tenant_id is None
        elif rollup.scope_kind is ScopeKind.TENANT:
            assert key == f"tenant={rollup.tenant_id}"
            assert rollup.agent_id is None
        elif rollup.scope_kind is ScopeKind.AGENT:
            assert (
                key == f"tenant={rollup.tenant_id}/agent={rollup.agent_id}@{rollup.agent_version}"
            )
            assert rollup.tool is None
        else:
            assert key == f"tenant={rollup.tenant_id}/tool={rollup.tool}"
            assert rollup.model_calls == rollup.reviews == rollup.runs_started == 0


def test_latency_quantiles_within_accuracy_and_exactly_ddsketch(
    events: list[RollupEvent], emitted: dict[tuple[str, int, str], Rollup]
) -> None:
    truth = ground_truth(events)
    checked = 0
    for key, expected in truth.items():
        rollup = emitted[key]
        values = expected.latencies
        got = [rollup.latency_p50, rollup.latency_p95, rollup.latency_p99]
        if not values:
            assert got == [None, None, None]
            assert rollup.latency_sketch is None
            continue
        ordered = sorted(values)
        direct = DDSketch(ALPHA)
        for v in values:
            direct.add(v)
        for q, estimate in zip(QS, got, strict=True):
            exact = ordered[int(q * (len(ordered) - 1))]
            assert estimate is not None
            assert abs(estimate - exact) <= ALPHA * exact * (1 + 1e-9), (key, q)
            assert estimate == direct.get_quantile_value(q), (key, q)
        checked += 1
    assert checked > 1000


def test_coarse_windows_are_the_exact_merge_of_their_seconds(
    emitted: dict[tuple[str, int, str], Rollup],
) -> None:
    for (resolution, start, key), coarse in emitted.items():
        if resolution == "1s":
            continue
        length = LENGTH_S[resolution] * 1_000_000
        seconds = [
            r
            for (res, s, k), r in emitted.items()
            if res == "1s" and k == key and start <= s < start + length
        ]
        assert sum(r.count for r in seconds) == coarse.count
        assert sum(r.tokens_in for r in seconds) == coarse.tokens_in
        merged = LatencySketch(ALPHA)
        for r in seconds:
            if r.latency_sketch is not None:
                merged.merge(LatencySketch.from_bytes(r.latency_sketch))
        if coarse.latency_sketch is None:
            assert merged.count == 0
            continue
        assert merged.to_bytes() == coarse.latency_sketch
        assert merged.quantiles(QS) == [coarse.latency_p50, coarse.latency_p95, coarse.latency_p99]
        remerged = merge_rollups(seconds, resolution, computed_at=STAMP)  # type: ignore[arg-type]
        assert remerged == coarse


# ---------------------------------------------------------------- lateness


def tool(at_s: float, tenant: str = "acme", latency: float = 100.0) -> ToolCall:
    return ToolCall(
        tenant_id=tenant,
        user_id="u",
        agent_id="planner",
        agent_version="1.0",
        run_id="r",
        tool="search",
        status=CallStatus.SUCCESS,
        latency_ms=latency,
        event_time=T0 + timedelta(seconds=at_s),
    )


def second(at_s: float) -> int:
    t = to_us(T0 + timedelta(seconds=at_s))
    return t - t % 1_000_000


def latest(rollups: list[Rollup]) -> dict[tuple[str, int, str], Rollup]:
    """The table's view: the last emission of each window (corrections replace)."""
    return {(r.resolution, to_us(r.window_start), r.scope_key): r for r in rollups}


def test_a_late_event_corrects_its_own_window() -> None:
    # the old rule counted late events in another window (late_events of the open one):
    # which window depended on read order. Now every event counts in its own window.
    settings = RollupSettings(allowed_lateness_s=2, sketch_relative_accuracy=ALPHA)
    agg = RollupAggregator(settings)
    out: list[Rollup] = []
    agg.add(tool(10.5))
    agg.add(tool(20.2))  # watermark 18.2: windows ending at or before it are closed
    first = agg.advance(computed_at=STAMP)
    out += first
    assert ("1s", second(10.5), "global") in by_key(first)
    assert agg.add(tool(12.0)) == ADDED  # its window [12, 13) is closed: a correction
    assert agg.add(tool(10.7, tenant="globex")) == ADDED  # [10, 11) was emitted: again
    agg.add(tool(18.5))  # on time: [18, 19) is open
    again = by_key(agg.advance(computed_at=STAMP))
    assert again[("1s", second(10.5), "global")].count == 2
    assert again[("1s", second(10.5), "tenant=globex")].late_events == 1
    assert again[("1s", second(12.0), "global")].count == 1
    assert ("1s", second(18.5), "global") not in again  # still open
    assert agg.advance(computed_at=STAMP) == []  # nothing changed: nothing emitted
    out += list(again.values()) + agg.advance(FAR, computed_at=STAMP)
    table = latest(out)
    assert table[("1s", second(12.0), "global")].late_events == 1
    # 1 min and 1 h are the exact merge of the seconds, corrections included
    for resolution in ("1s", "1m", "1h"):
        rows = [r for (res, _, k), r in table.items() if res == resolution and k == "global"]
        assert sum(r.count for r in rows) == 5
        assert sum(r.late_events for r in rows) == 2


def test_a_window_closes_when_the_watermark_reaches_its_end() -> None:
    settings = RollupSettings(allowed_lateness_s=2, sketch_relative_accuracy=ALPHA)
    agg = RollupAggregator(settings)
    agg.add(tool(16.5))
    agg.add(tool(17.5))
    agg.add(tool(20.0))  # watermark exactly 18.0
    closed = {(r.resolution, to_us(r.window_start), r.scope_key) for r in agg.advance()}
    assert ("1s", second(16.5), "global") in closed
    assert ("1s", second(17.5), "global") in closed  # [17, 18) ends at the watermark
    agg.add(tool(17.999999))  # [17, 18) ends at the watermark: emitted again
    agg.add(tool(18.0))  # [18, 19) is open
    rest = by_key(agg.advance(FAR, computed_at=STAMP))
    corrected = rest[("1s", second(17.5), "global")]
    assert (corrected.count, corrected.late_events) == (2, 1)
    assert (
        rest[("1s", second(18.0), "global")].count,
        rest[("1s", second(18.0), "global")].late_events,
    ) == (1, 0)


def test_no_event_is_late_within_the_allowed_lateness(events: list[RollupEvent]) -> None:
    rollups = run_all(events)
    assert sum(r.late_events for r in rollups) == 0
    assert sum(r.count for r in rollups if r.resolution == "1h" and r.scope_key == "global") == sum(
        isinstance(e, ToolCall) for e in events
    )


def run_latest(events: list[RollupEvent], settings: RollupSettings = SETTINGS) -> list[Rollup]:
    agg = RollupAggregator(settings)
    out: list[Rollup] = []
    for i, ev in enumerate(events):
        agg.add(ev)
        if i % 97 == 0:
            out.extend(agg.advance(computed_at=STAMP))
    out.extend(agg.advance(FAR, computed_at=STAMP))
    return list(latest(out).values())


def test_heavy_disorder_gives_the_ground_truth_of_every_event() -> None:
    disordered = traffic(seed=5, n=4000, span_s=120, jitter_s=6.0)  # jitter beyond lateness
    lateness = round(SETTINGS.allowed_lateness_s * 1_000_000)
    late_in: dict[int, int] = defaultdict(int)  # 1 s window -> its events that came late
    newest = None
    for ev in disordered:  # the documented rule, simulated independently
        t = to_us(ev.event_time)
        start = t - t % 1_000_000
        if newest is not None and start + 1_000_000 <= newest - lateness:
            late_in[start] += 1
        newest = t if newest is None else max(newest, t)
    assert 100 < sum(late_in.values()) < len(disordered) // 2
    emitted = latest(run_latest(disordered))
    truth = ground_truth(disordered)
    assert set(emitted) == set(truth)
    for window, expected in truth.items():
        rollup = emitted[window]
        got = {name: getattr(rollup, name) for name in COUNTED if name != "late_events"}
        assert got == {name: expected.counts.get(name, 0) for name in got}, window
    for (resolution, start, scope_key), rollup in emitted.items():
        if resolution == "1s" and scope_key == "global":
            assert rollup.late_events == late_in.get(start, 0)
    # whatever the order: the same final table
    shuffled = list(disordered)
    random.Random(3).shuffle(shuffled)
    again = latest(run_latest(shuffled))
    assert {k: r.model_dump(exclude={"late_events", "computed_at"}) for k, r in again.items()} == {
        k: r.model_dump(exclude={"late_events", "computed_at"}) for k, r in emitted.items()
    }


def test_idle_watermark_closes_windows_and_a_straggler_corrects_its_own() -> None:
    agg = RollupAggregator(SETTINGS)
    agg.add(tool(5.2))
    assert agg.advance(computed_at=STAMP) == []  # watermark 2.2: [5, 6) still open
    idle_mark = to_us(T0 + timedelta(seconds=20))  # the wall clock minus the lateness
    closed = agg.advance(idle_mark, computed_at=STAMP)
    assert {(r.resolution, to_us(r.window_start)) for r in closed} == {("1s", second(5.2))}
    agg.add(tool(6.0))  # its window ended before the (idle) watermark, within the horizon
    rest = by_key(agg.advance(FAR, computed_at=STAMP))
    assert rest[("1s", second(6.0), "global")].count == 1


def test_beyond_the_horizon_an_event_is_too_late_and_counted_nowhere() -> None:
    settings = RollupSettings(allowed_lateness_s=2, horizon_s=10, sketch_relative_accuracy=ALPHA)
    agg = RollupAggregator(settings)
    agg.add(tool(30.0))  # watermark 28: [17, 18) + 10 s horizon ends at 28
    out = agg.advance(computed_at=STAMP)
    assert agg.add(tool(17.9)) == TOO_LATE
    assert agg.add(tool(18.0)) == ADDED  # [18, 19) is kept until 29
    out += agg.advance(FAR, computed_at=STAMP)
    table = latest(out)
    assert ("1s", second(17.9), "global") not in table
    assert sum(r.count for k, r in table.items() if k[0] == "1m" and k[2] == "global") == 2


def test_a_duplicate_counts_once_within_the_horizon_also_after_a_restore() -> None:
    agg = RollupAggregator(SETTINGS)
    call = tool(5.5)
    assert agg.add(call) == ADDED
    assert agg.add(call) == DUPLICATE
    agg.add(tool(9.0))
    agg.advance(computed_at=STAMP)  # [5, 6) is emitted, still kept
    table = json.loads(json.dumps(agg.snapshot()))
    restored = RollupAggregator.restore(SETTINGS, table.items())
    assert restored.add(call) == DUPLICATE
    assert (
        latest(restored.advance(FAR, computed_at=STAMP)).get(("1s", second(5.5), "global")) is None
    )
    rows = latest(agg.advance(FAR, computed_at=STAMP))
    assert rows[("1m", to_us(T0) - to_us(T0) % 60_000_000, "global")].count == 2


def test_a_synthesized_timeout_counts_in_its_deadlines_window_kept_for_it() -> None:
    # the old rule put it in the oldest window still kept: which one depended on which
    # clock fired it. Now the deadline's window is kept while a live run may time out in it
    settings = RollupSettings(allowed_lateness_s=3, horizon_s=5, sketch_relative_accuracy=ALPHA)
    ctx = {
        "tenant_id": "acme",
        "user_id": "u",
        "agent_id": "planner",
        "agent_version": "1.0",
        "run_id": "r",
        "from_state": AgentState.REVIEWING,
        "to_state": AgentState.FAILED,
        "dwell_ms": 300_000,
        "event_time": T0 + timedelta(seconds=30),  # the deadline
    }
    deadline = to_us(T0 + timedelta(seconds=30))
    kept, dropped = RollupAggregator(settings), RollupAggregator(settings)
    asked: list[int] = []

    def open_deadline() -> int:
        asked.append(1)
        return deadline

    for agg, keep_from in ((kept, open_deadline), (dropped, None)):
        agg.add(tool(30.2))
        agg.add(tool(40.0))  # watermark 37.0: [30, 31) ends 6 s before it, past the horizon
        agg.advance(computed_at=STAMP, keep_from=keep_from)
    assert asked  # asked because a window would have been dropped
    timeout = StateTransition(**ctx, synthesized=True, error_category="TIMEOUT")
    assert kept.add(timeout) == ADDED
    assert kept.add(StateTransition(**ctx)) == TOO_LATE  # the same, from an agent: too late
    rest = by_key(kept.advance(FAR, computed_at=STAMP))
    landing = rest[("1s", second(30.0), "global")]  # emitted again, corrected
    assert (landing.count, landing.runs_failed, landing.late_events) == (1, 1, 0)
    assert landing.state_time_ms == {AgentState.REVIEWING: 300_000}
    # without a live run there, the window went: the timeout counts nowhere else
    assert dropped.add(timeout) == TOO_LATE
    assert all(r.runs_failed == 0 for r in dropped.advance(FAR, computed_at=STAMP))


def test_a_deadline_in_a_quiet_stretch_is_kept_past_every_window() -> None:
    # the soak's backlog: its last windows end before the hour, a run's deadline falls in
    # the quiet minutes after it; once those windows went, nothing was left to drop and
    # the dropped mark moved past the deadline without asking for it: the timeout was
    # refused as too late (seen once in the CI soak)
    settings = RollupSettings(allowed_lateness_s=3, horizon_s=5, sketch_relative_accuracy=ALPHA)
    agg = RollupAggregator(settings)
    deadline = to_us(T0 + timedelta(seconds=95))  # 11:00:05, no event in that hour
    agg.add(tool(30.2))
    agg.advance(to_us(T0 + timedelta(seconds=150)), STAMP, keep_from=lambda: deadline)
    assert agg.dropped == deadline - deadline % 1_000_000  # every window before it went
    agg.advance(to_us(T0 + timedelta(seconds=300)), STAMP, keep_from=lambda: deadline)
    assert agg.dropped == deadline - deadline % 1_000_000  # and the mark waits for it
    timeout = StateTransition(
        tenant_id="acme",
        user_id="u",
        agent_id="planner",
        agent_version="1.0",
        run_id="r",
        from_state=AgentState.EXECUTING,
        to_state=AgentState.FAILED,
        dwell_ms=60_000,
        event_time=T0 + timedelta(seconds=95),
        synthesized=True,
        error_category="TIMEOUT",
    )
    assert agg.add(timeout) == ADDED
    rows = by_key(agg.advance(FAR, computed_at=STAMP))
    assert rows[("1s", second(95), "global")].runs_failed == 1
    # the run ended: nothing holds the mark any more
    agg.advance(FAR, STAMP, keep_from=lambda: None)
    assert agg.dropped == FAR - 5_000_000


def test_a_synthesized_timeout_within_the_horizon_is_never_late() -> None:
    # published when a clock passes its deadline: which clock first depends on the
    # interleaving of partitions, so its lateness would too; it counts in its own window
    settings = RollupSettings(allowed_lateness_s=3, sketch_relative_accuracy=ALPHA)
    agg = RollupAggregator(settings)
    agg.add(tool(40.0))
    timeout = StateTransition(
        tenant_id="acme",
        user_id="u",
        agent_id="planner",
        agent_version="1.0",
        run_id="r",
        from_state=AgentState.INIT,
        to_state=AgentState.FAILED,
        dwell_ms=10_000,
        event_time=T0 + timedelta(seconds=30),
        synthesized=True,
        error_category="TIMEOUT",
    )
    assert agg.add(timeout, clock_us=to_us(T0 + timedelta(seconds=40))) == ADDED
    straggler = tool(30.5)
    assert agg.add(straggler, clock_us=to_us(T0 + timedelta(seconds=40))) == ADDED
    rows = by_key(agg.advance(FAR, computed_at=STAMP))
    window = rows[("1s", second(30.0), "global")]
    assert (window.runs_failed, window.count, window.late_events) == (1, 1, 1)


def test_state_of_the_previous_release_restores() -> None:
    # version 1 (today's release): open 1 s cells not merged yet, 1 min cells holding the
    # merged closed seconds; it reads as is and goes on exactly
    minute = second(61.0) - second(61.0) % 60_000_000
    v1 = {
        "meta": {"version": 1, "max_event": second(70.5), "watermark": second(61.0)},
        f"1s|{second(61.0)}|global": GOOD_CELL,
        f"1m|{minute}|global": {**GOOD_CELL, "figures": {"count": 3}, "counts": [3]},
    }
    agg = RollupAggregator.restore(SETTINGS, v1.items())
    agg.add(tool(61.2))
    table = latest(agg.advance(FAR, computed_at=STAMP))
    assert table[("1s", second(61.0), "global")].count == 2
    assert table[("1m", minute, "global")].count == 5


# ---------------------------------------------------------------- state, merges, settings


def test_restore_from_table_resumes_exactly(events: list[RollupEvent]) -> None:
    straight = run_all(events)
    agg = RollupAggregator(SETTINGS)
    table: dict[str, Any] = {}  # what the changelog would hold
    out: list[Rollup] = []
    half = len(events) // 2
    for i, ev in enumerate(events[:half]):
        agg.add(ev)
        if i % 97 == 0:
            out.extend(agg.advance(computed_at=STAMP))
        if i % 250 == 0:
            for key, value in agg.drain_changes().items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = json.loads(json.dumps(value))
    for key, value in agg.drain_changes().items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = json.loads(json.dumps(value))
    assert table == json.loads(json.dumps(agg.snapshot()))
    restored = RollupAggregator.restore(SETTINGS, table.items())
    assert restored.snapshot() == agg.snapshot()
    for j, ev in enumerate(events[half:], start=half):
        restored.add(ev)
        if j % 97 == 0:
            out.extend(restored.advance(computed_at=STAMP))
    out.extend(restored.advance(FAR, computed_at=STAMP))
    assert out == straight


GOOD_CELL = {
    "scope": {
        "kind": "GLOBAL",
        "key": "global",
        "tenant_id": None,
        "agent_id": None,
        "agent_version": None,
        "tool": None,
    },
    "figures": {"count": 1},
    "state_ms": {},
    "keys": [500],
    "counts": [1],
}


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("2s|0|global", GOOD_CELL, "unknown resolution '2s'"),
        ("1s|abc|global", GOOD_CELL, "invalid literal"),
        ("1s|0|global", {**GOOD_CELL, "counts": []}, "shorter"),
        ("meta", {"version": 9, "max_event": None, "watermark": None}, "version 9"),
        ("meta", {}, "version"),
    ],
)
def test_restore_names_a_bad_entry(key: str, value: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        RollupAggregator.restore(SETTINGS, [(key, value)])
    assert repr(key) in str(info.value)


def test_restore_reads_a_cell() -> None:
    agg = RollupAggregator.restore(SETTINGS, [("1s|0|global", GOOD_CELL)])
    (rollup,) = agg.advance(FAR, computed_at=STAMP)[:1]
    assert (rollup.count, rollup.window_start) == (1, from_us(0))
    assert rollup.latency_p50 == LatencySketch.wrap(ALPHA, {500: 1}).quantile(0.5)


def test_partials_from_two_partitions_merge_into_the_whole(events: list[RollupEvent]) -> None:
    whole = by_key(run_all(events))
    parts: list[list[RollupEvent]] = [[], []]
    for ev in events:
        parts[int(ev.run_id.split("-")[1]) % 2].append(ev)
    partials: dict[tuple[str, int, str], list[Rollup]] = defaultdict(list)
    for part in parts:
        for rollup in run_all(part):
            partials[(rollup.resolution, to_us(rollup.window_start), rollup.scope_key)].append(
                rollup
            )
    assert set(partials) == set(whole)
    for key, pieces in partials.items():
        assert merge_rollups(pieces, computed_at=STAMP) == whole[key]


def test_merge_rollups_refuses_mixed_scopes_and_windows(
    emitted: dict[tuple[str, int, str], Rollup],
) -> None:
    seconds = sorted(
        (r for (res, _, k), r in emitted.items() if res == "1s" and k == "global"),
        key=lambda r: r.window_start,
    )
    with pytest.raises(ValueError, match="differs from"):
        merge_rollups(seconds[:2])
    other = next(r for (res, _, k), r in emitted.items() if res == "1s" and k != "global")
    with pytest.raises(ValueError, match="scope"):
        merge_rollups([seconds[0], other])
    with pytest.raises(ValueError, match="no rollups"):
        merge_rollups([])


def test_only_configured_resolutions_are_emitted(events: list[RollupEvent]) -> None:
    settings = SETTINGS.model_copy(update={"resolutions": ("1m",)})
    only = by_key(run_all(events, settings))
    full = by_key(run_all(events))
    assert {k[0] for k in only} == {"1m"}
    assert only == {k: r for k, r in full.items() if k[0] == "1m"}


def test_scope_keys_escape_separators() -> None:
    agg = RollupAggregator(SETTINGS)
    odd = ToolCall(
        tenant_id="a/tool=x",
        user_id="u",
        agent_id="p@q",
        agent_version="1",
        run_id="r",
        tool="t",
        status=CallStatus.SUCCESS,
        latency_ms=1.0,
        event_time=T0,
    )
    plain = odd.model_copy(update={"tenant_id": "a", "tool": "x", "event_id": str(uuid.uuid4())})
    agg.add(odd)
    agg.add(plain)
    keys = {r.scope_key for r in agg.advance(FAR, computed_at=STAMP) if r.resolution == "1s"}
    assert len(keys) == 1 + 2 + 2 + 2
    assert "tenant=a%2Ftool%3Dx/agent=p%40q@1" in keys
    assert "tenant=a/tool=x" in keys


def test_window_bounds_are_utc_and_aligned(emitted: dict[tuple[str, int, str], Rollup]) -> None:
    for (resolution, start, _), rollup in emitted.items():
        assert rollup.window_start == from_us(start)
        assert start % (LENGTH_S[resolution] * 1_000_000) == 0
        assert rollup.window_start.tzinfo is not None
