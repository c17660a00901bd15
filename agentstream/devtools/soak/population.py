"""The soak's population: seeded runs, each event tagged with when and how it is produced.

Runs of several tenants, agents (two versions each) and tools go through the
lifecycle INIT → PREPARING → EXECUTING (tool and model calls) → REVIEWING (a
human decision) → COMPLETED, or fail (a non-retryable tool error, then
EXECUTING → FAILED), or stall in one state (the worker must time them out), or
carry one invalid transition (no INIT, a skipped state, a move backwards, a
move after the terminal state, a ``from_state`` that is not the run's state).

Event times are chosen so the truth is unambiguous: a run's events are 100-900 ms
apart (far below every budget), times are whole milliseconds, a run stuck in
EXECUTING made no tool call there (its deadline cannot depend on which topic the
worker read first), and the population ends with one *closing* run on every
partition, dated after every deadline plus the grace and the lateness, so every
window before :attr:`Population.cutoff` closes by event time.

Phases (``Planned.phase``): ``backlog`` (emitted before the worker starts, dated
before the previous full hour ended, so a 1 h window closes too), ``live`` (produced
when the wall clock reaches its event time), ``late`` (a producer whose events are
dated ``late_by_s`` behind the stream, produced after the live phase), ``closing``.
Absurd timestamps (years 1970 and 9999) are produced during the live phase.

This module imports only the contracts (``agentstream.schemas``).
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from agentstream.schemas import (
    AgentEvent,
    AgentState,
    CallStatus,
    Decision,
    ErrorClass,
    ModelCall,
    ReviewDecision,
    StateTransition,
    ToolCall,
)

__all__ = [
    "FAULTS",
    "Phase",
    "Planned",
    "Population",
    "PopulationConfig",
    "generate",
    "murmur2",
    "partition_of",
]

#: the faults ``agentstream soak --faults`` knows
#: ``rebalance`` (with ``--workers`` 2 or more): the last worker is SIGKILLed for good (its
#: partitions move to the others), a new worker (a new identity) joins later
FAULTS: Final = (
    "kill",
    "broker",
    "clickhouse",
    "backlog",
    "duplicates",
    "late",
    "clock",
    "rebalance",
)

Phase = Literal["backlog", "live", "late", "closing"]
S = AgentState

#: run kinds and their weights (the rest of the weight goes to ``complete``)
_KINDS: Final = {
    "fail": 0.06,
    "stall:INIT": 0.015,
    "stall:PREPARING": 0.015,
    "stall:EXECUTING": 0.015,
    "stall:REVIEWING": 0.02,
    "invalid:no_init": 0.01,
    "invalid:skip_review": 0.01,
    "invalid:backwards": 0.01,
    "invalid:after_terminal": 0.01,
    "invalid:mismatch": 0.01,
}
_NEVER: Final = datetime.min.replace(tzinfo=UTC)
_MODELS: Final = (("gpt-4.1", "openai", 0.002, 0.008), ("claude-sonnet", "anthropic", 0.003, 0.015))


@dataclass(frozen=True, slots=True)
class Planned:
    """One event of the population and how the harness produces it.

    ``at`` is when to produce it in the live phase (seconds after the live start);
    ``copies`` > 1 is a duplicate delivery (the same encoded message again).
    """

    event: AgentEvent
    phase: Phase
    kind: str
    at: float = 0.0
    copies: int = 1


@dataclass(frozen=True)
class PopulationConfig:
    """What to generate. ``start`` is the wall clock when the live phase begins."""

    start: datetime
    seed: int = 7
    live_s: float = 60.0
    runs_per_s: float = 3.0
    faults: frozenset[str] = frozenset(FAULTS)
    backlog_runs: int = 120
    late_runs: int = 20
    late_by_s: float = 180.0
    partitions: int = 6
    tenants: tuple[str, ...] = ("acme", "globex", "initech")
    agents: tuple[str, ...] = ("planner", "booker", "researcher")
    versions: tuple[str, ...] = ("1.0.0", "1.1.0")
    tools: tuple[str, ...] = (
        "search_flights",
        "book_hotel",
        "web_search",
        "sql_query",
        "send_email",
    )
    duplicate_rate: float = 0.03
    absurd_events: int = 6
    #: seconds added after the last deadline + grace + lateness before the closing runs
    closing_margin_s: float = 3.0
    #: budgets and margins the population must respect (the worker's settings)
    max_budget_s: float = 30.0
    grace_s: float = 2.0
    lateness_s: float = 3.0


@dataclass
class Population:
    """The planned events, by phase, and the instants the comparison needs."""

    config: PopulationConfig
    events: list[Planned] = field(default_factory=list)
    #: event time of the closing runs (the harness waits for the wall clock to reach it)
    closing_at: datetime = _NEVER
    #: windows ending at or before this instant are compared
    cutoff: datetime = _NEVER

    def phase(self, phase: Phase) -> list[Planned]:
        """The events of one phase, in production order."""
        return [p for p in self.events if p.phase == phase]

    @property
    def sent(self) -> int:
        """Messages the harness produces (duplicates included)."""
        return sum(p.copies for p in self.events)


# -- partitioning (Kafka's murmur2, as the Java clients and librdkafka's murmur2_random) -----


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (signed 32-bit, like ``Utils.murmur2``)."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_of(key: str, partitions: int) -> int:
    """The partition a message keyed ``key`` lands on (positive murmur2 modulo the count)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


# -- generation ------------------------------------------------------------------------------


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


class _Gen:
    def __init__(self, config: PopulationConfig) -> None:
        self.c = config
        self.rng = random.Random(config.seed)
        self.mu = math.log(300.0)
        self.sigma = math.log(1500.0 / 300.0) / 1.645

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def kind(self) -> str:
        roll = self.rng.random()
        for kind, weight in _KINDS.items():
            if roll < weight:
                return kind
            roll -= weight
        return "complete"

    def run(self, started: datetime, kind: str, run_id: str | None = None) -> list[AgentEvent]:
        """The events of one run of ``kind``, in event-time order, from ``started``."""
        rng = self.rng
        c = self.c
        ctx = {
            "tenant_id": rng.choice(c.tenants),
            "user_id": f"user-{rng.randrange(100)}",
            "agent_id": rng.choice(c.agents),
            "agent_version": rng.choice(c.versions),
            "run_id": run_id or self.uuid(),
        }
        clock = started.replace(microsecond=started.microsecond // 1000 * 1000)
        events: list[AgentEvent] = []
        state: AgentState | None = None

        def tick() -> datetime:
            nonlocal clock
            clock = clock + timedelta(milliseconds=rng.randint(100, 900))
            return clock

        def move(to: AgentState, source: AgentState | None = None, *, keep: bool = False) -> None:
            nonlocal state
            events.append(
                StateTransition(
                    **ctx,
                    event_id=self.uuid(),
                    event_time=tick(),
                    from_state=source if source is not None or keep else state,
                    to_state=to,
                    reason="tool failed" if to is S.FAILED else None,
                )
            )
            if not keep:
                state = to

        if kind == "invalid:no_init":
            move(S.PREPARING, S.INIT, keep=True)
            return events
        move(S.INIT)
        if kind == "stall:INIT":
            return events
        move(S.PREPARING)
        if kind == "stall:PREPARING":
            return events
        if kind == "invalid:mismatch":
            move(S.COMPLETED, S.REVIEWING, keep=True)  # refused: the run is PREPARING
            return events
        move(S.EXECUTING)
        if kind == "stall:EXECUTING":
            return events  # no tool call: the deadline is entry + the EXECUTING budget
        if kind == "invalid:skip_review":
            move(S.COMPLETED, S.EXECUTING, keep=True)  # refused: skips REVIEWING
            return events
        calls = rng.randint(1, 3)
        for n in range(calls):
            failing = kind == "fail" and n == calls - 1
            events.append(self.tool_call(ctx, tick(), failing=failing))
            events.append(self.model_call(ctx, tick()))
        if kind == "fail":
            move(S.FAILED)
            return events
        move(S.REVIEWING)
        if kind == "stall:REVIEWING":
            return events
        if kind == "invalid:backwards":
            move(S.PREPARING, S.REVIEWING, keep=True)  # refused: goes backwards
            return events
        events.append(
            ReviewDecision(
                **ctx,
                event_id=self.uuid(),
                event_time=tick(),
                reviewer=f"reviewer-{rng.randrange(10)}",
                decision=Decision.OVERRIDDEN if rng.random() < 0.1 else Decision.APPROVED,
            )
        )
        move(S.COMPLETED)
        if kind == "invalid:after_terminal":
            move(S.EXECUTING, S.COMPLETED, keep=True)  # refused: the run is COMPLETED
        return events

    def tool_call(self, ctx: dict[str, str], at: datetime, *, failing: bool = False) -> ToolCall:
        rng = self.rng
        latency = 0.0 if rng.random() < 0.01 else round(rng.lognormvariate(self.mu, self.sigma), 3)
        status, error_class = CallStatus.SUCCESS, ErrorClass.NONE
        roll = rng.random()
        if failing:
            status, error_class = CallStatus.ERROR, ErrorClass.NON_RETRYABLE
        elif roll < 0.05:
            status, error_class = CallStatus.ERROR, ErrorClass.RETRYABLE
        elif roll < 0.07:
            status, error_class = CallStatus.ERROR, ErrorClass.TIMEOUT
        elif roll < 0.10:
            status = CallStatus.PARTIAL
        return ToolCall(
            **ctx,
            event_id=self.uuid(),
            event_time=at,
            tool=rng.choice(self.c.tools),
            status=status,
            error_class=error_class,
            error_code=None if error_class is ErrorClass.NONE else error_class.value.lower(),
            latency_ms=latency,
            timeout_ms=30_000.0,
            params={"q": f"q{rng.randrange(1000)}"},
        )

    def model_call(self, ctx: dict[str, str], at: datetime) -> ModelCall:
        rng = self.rng
        model, provider, in_price, out_price = rng.choice(_MODELS)
        tokens_in, tokens_out = rng.randint(200, 4000), rng.randint(50, 800)
        return ModelCall(
            **ctx,
            event_id=self.uuid(),
            event_time=at,
            model=model,
            provider=provider,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=round(tokens_in / 1000 * in_price + tokens_out / 1000 * out_price, 6),
            latency_ms=round(rng.lognormvariate(math.log(800), 0.5), 3),
            status=CallStatus.SUCCESS,
        )

    def copies(self) -> int:
        if "duplicates" in self.c.faults and self.rng.random() < self.c.duplicate_rate:
            return self.rng.choice((2, 3))
        return 1

    def absurd(self, n: int) -> AgentEvent:
        """A call dated in 9999 or 1970 (alternately), of a run of its own."""
        base = datetime(9999, 1, 1, tzinfo=UTC) if n % 2 == 0 else datetime(1970, 1, 2, tzinfo=UTC)
        at = base + timedelta(seconds=n)
        ctx = {
            "tenant_id": self.rng.choice(self.c.tenants),
            "user_id": "user-clock",
            "agent_id": self.rng.choice(self.c.agents),
            "agent_version": self.rng.choice(self.c.versions),
            "run_id": self.uuid(),
        }
        return self.tool_call(ctx, at) if n % 4 < 2 else self.model_call(ctx, at)


def _ordered(runs: Iterable[list[AgentEvent]]) -> list[AgentEvent]:
    """Every run's events merged in event-time order (each run's own order kept)."""
    heap: list[tuple[datetime, int, AgentEvent]] = []
    seq = 0
    for events in runs:
        for event in events:
            heap.append((event.event_time, seq, event))
            seq += 1
    heapq.heapify(heap)
    return [heapq.heappop(heap)[2] for _ in range(len(heap))]


def _kind_of(runs: Sequence[tuple[str, list[AgentEvent]]]) -> dict[str, str]:
    return {events[0].run_id: kind for kind, events in runs if events}


def generate(config: PopulationConfig) -> Population:
    """The population of ``config`` (the same config gives the same events, ids included)."""
    gen = _Gen(config)
    c = config
    start = c.start.replace(microsecond=c.start.microsecond // 1000 * 1000)
    pop = Population(config)
    horizon = start  # the latest event time or deadline so far

    def add(runs: list[tuple[str, list[AgentEvent]]], phase: Phase, live: bool = False) -> None:
        nonlocal horizon
        kinds = _kind_of(runs)
        for event in _ordered(events for _, events in runs):
            at = (event.event_time - start).total_seconds() if live else 0.0
            kind = kinds[event.run_id]
            pop.events.append(Planned(event, phase, kind, at, gen.copies()))
            horizon = max(horizon, event.event_time)

    if "backlog" in c.faults and c.backlog_runs > 0:
        # dated before the previous full hour ended: its 1 h window closes during the soak
        end = min(start - timedelta(seconds=60), _floor_hour(start))
        span = max(30.0, c.backlog_runs / max(c.runs_per_s, 0.1))
        first = end - timedelta(seconds=span + 15)
        backlog = []
        for i in range(c.backlog_runs):
            began = first + timedelta(seconds=span * i / c.backlog_runs)
            kind = gen.kind()
            backlog.append((kind, gen.run(began, kind)))
        add(backlog, "backlog")

    live = []
    n = 0
    while n / c.runs_per_s < c.live_s:
        kind = gen.kind()
        live.append((kind, gen.run(start + timedelta(seconds=n / c.runs_per_s), kind)))
        n += 1
    add(live, "live", live=True)
    if "clock" in c.faults:
        for i in range(c.absurd_events):
            at = gen.rng.uniform(0.1, 0.9) * c.live_s
            pop.events.append(Planned(gen.absurd(i), "live", "clock", at))
        pop.events.sort(key=lambda p: (p.phase != "backlog", p.at))

    if "late" in c.faults and c.late_runs > 0:
        # a producer that spooled through an outage: events minutes behind the stream
        latest = start + timedelta(seconds=c.live_s - c.late_by_s)
        late = []
        for i in range(c.late_runs):
            began = latest - timedelta(seconds=20 * (1 - i / c.late_runs))
            late.append(("complete", gen.run(began, "complete")))
        add(late, "late")

    closing = horizon + timedelta(seconds=c.max_budget_s + c.grace_s + c.lateness_s)
    closing += timedelta(seconds=c.closing_margin_s)
    closing = closing.replace(microsecond=0) + timedelta(seconds=1)
    pop.closing_at = closing
    pop.cutoff = closing - timedelta(seconds=math.ceil(c.lateness_s) + 1)
    # one complete run per partition: every input partition's event time passes the cutoff
    closers: dict[int, str] = {}
    while len(closers) < c.partitions:
        run_id = gen.uuid()
        closers.setdefault(partition_of(run_id, c.partitions), run_id)
    runs = [("closing", gen.run(closing, "complete", closers[p])) for p in sorted(closers)]
    for event in _ordered(events for _, events in runs):
        pop.events.append(Planned(event, "closing", "closing"))
    return pop
