"""Synthetic agents: reproducible runs through the real Emitter.

A :class:`Simulation` generates runs (INIT → PREPARING → EXECUTING with tool and
model calls → REVIEWING with a human decision → COMPLETED / FAILED) for a
population of tenants, agents, versions and tools, with chosen error rates by
class, a latency distribution, invalid transitions, stalled runs and human
overrides. :class:`Incident` windows raise a tool's error rate or an agent
version's latency for a while (the demo's scripted incident). The same seed
gives the same events, ids included.
"""

from __future__ import annotations

import heapq
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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

__all__ = ["INVALID_KINDS", "Incident", "Simulation", "SimulationConfig", "SimulationReport"]

#: the invalid transitions the simulator injects, and what they do
INVALID_KINDS = {
    "skip_review": "EXECUTING→COMPLETED (skips REVIEWING)",
    "no_init": "a run whose first event is PREPARING",
    "backwards": "REVIEWING→PREPARING (moves backwards)",
    "after_terminal": "an event after COMPLETED",
}

_TOOLS = ("search_flights", "book_hotel", "web_search", "sql_query", "send_email", "calendar")
_MODELS = (("gpt-4.1", "openai", 0.002, 0.008), ("claude-sonnet", "anthropic", 0.003, 0.015))


@dataclass(frozen=True)
class Incident:
    """For ``[start_s, end_s)`` of the run: a tool fails more, or a version is slower."""

    start_s: float
    end_s: float
    tool: str | None = None
    error_rate: float = 0.0
    agent_version: str | None = None
    latency_factor: float = 1.0

    def active(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.end_s


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Rates are probabilities per call or per run."""

    agents: int = 3
    versions: tuple[str, ...] = ("1.0.0", "1.1.0")
    tenants: tuple[str, ...] = ("acme", "globex", "initech")
    tools: tuple[str, ...] = _TOOLS
    runs_per_s: float = 20.0
    duration_s: float | None = 30.0
    max_events: int | None = None
    tool_calls_per_run: tuple[int, int] = (1, 4)
    retryable_rate: float = 0.02
    non_retryable_rate: float = 0.005
    timeout_rate: float = 0.005
    partial_rate: float = 0.01
    latency_median_ms: float = 300.0
    latency_p95_ms: float = 1500.0
    invalid_rate: float = 0.02
    stall_rate: float = 0.01
    override_rate: float = 0.05
    legal_rate: float = 0.1
    seed: int = 7
    incidents: tuple[Incident, ...] = ()
    #: the longest a single call advances its run's event time (its latency_ms is kept)
    max_step_ms: float = 2_000.0


@dataclass
class SimulationReport:
    """What the simulation sent."""

    runs: int = 0
    events: Counter[str] = field(default_factory=Counter)
    tool_status: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    stalled: int = 0
    overrides: int = 0
    elapsed_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.events.values())


class Simulation:
    """Generates the events of synthetic runs; :meth:`run` paces them out."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        # lognormal with the requested median and p95 (z(0.95) = 1.645)
        self._mu = math.log(config.latency_median_ms)
        self._sigma = max(1e-6, math.log(config.latency_p95_ms / config.latency_median_ms) / 1.645)
        self._agents = [f"agent-{i + 1}" for i in range(config.agents)]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def run_events(
        self, started: datetime, elapsed_s: float, report: SimulationReport
    ) -> list[AgentEvent]:
        """The events of one run starting at ``started`` (event times spread over the run)."""
        cfg, rng = self.config, self._rng
        version = rng.choice(cfg.versions)
        ctx = {
            "tenant_id": rng.choice(cfg.tenants),
            "user_id": f"user-{rng.randrange(1000)}",
            "agent_id": rng.choice(self._agents),
            "agent_version": version,
            "run_id": self._uuid(),
        }
        retention = "LEGAL" if rng.random() < cfg.legal_rate else "BUSINESS"
        clock = started
        events: list[AgentEvent] = []
        state: AgentState | None = None

        def step(ms: float) -> datetime:
            nonlocal clock
            clock = clock + timedelta(milliseconds=ms)
            return clock

        def move(to: AgentState, *, from_state: AgentState | None = None, reason: str = "") -> None:
            nonlocal state
            events.append(
                StateTransition(
                    **ctx,
                    event_id=self._uuid(),
                    event_time=step(rng.uniform(5, 50)),
                    from_state=from_state if from_state is not None else state,
                    to_state=to,
                    reason=reason or None,
                    retention=retention,
                )
            )
            state = to

        invalid = rng.choice(list(INVALID_KINDS)) if rng.random() < cfg.invalid_rate else None
        if invalid:
            report.invalid[invalid] += 1
        if invalid == "no_init":
            move(AgentState.PREPARING, from_state=AgentState.INIT)
            return events
        move(AgentState.INIT)
        move(AgentState.PREPARING)
        move(AgentState.EXECUTING)
        failed = False
        for attempt_tool in range(rng.randint(*cfg.tool_calls_per_run)):
            del attempt_tool
            call = self._tool_call(ctx, step, elapsed_s, version, retention)
            events.append(call)
            report.tool_status[call.status.value] += 1
            failed = failed or call.error_class is ErrorClass.NON_RETRYABLE
            events.append(self._model_call(ctx, step, retention))
        if invalid == "skip_review":
            move(AgentState.COMPLETED, reason="done")
            return events
        if failed:
            move(AgentState.FAILED, reason="tool failed")
            return events
        move(AgentState.REVIEWING)
        if rng.random() < cfg.stall_rate:
            report.stalled += 1
            return events  # never reviewed: the processor times it out
        if invalid == "backwards":
            move(AgentState.PREPARING, reason="re-plan")
            return events
        overridden = rng.random() < cfg.override_rate
        report.overrides += overridden
        events.append(
            ReviewDecision(
                **ctx,
                event_id=self._uuid(),
                event_time=step(rng.uniform(50, 400)),
                reviewer=f"reviewer-{rng.randrange(20)}",
                decision=Decision.OVERRIDDEN if overridden else Decision.APPROVED,
                retention=retention,
            )
        )
        move(AgentState.COMPLETED)
        if invalid == "after_terminal":
            move(AgentState.EXECUTING, from_state=AgentState.COMPLETED, reason="one more thing")
        return events

    def _tool_call(
        self,
        ctx: dict[str, str],
        step: Callable[[float], datetime],
        elapsed_s: float,
        version: str,
        retention: str,
    ) -> ToolCall:
        cfg, rng = self.config, self._rng
        tool = rng.choice(cfg.tools)
        latency = rng.lognormvariate(self._mu, self._sigma)
        extra_error = 0.0
        for incident in cfg.incidents:
            if incident.active(elapsed_s):
                if incident.tool == tool:
                    extra_error = max(extra_error, incident.error_rate)
                if incident.agent_version == version:
                    latency *= incident.latency_factor
        roll = rng.random()
        status, error_class, code = CallStatus.SUCCESS, ErrorClass.NONE, None
        if roll < extra_error + cfg.retryable_rate:
            status, error_class, code = CallStatus.ERROR, ErrorClass.RETRYABLE, "503"
        elif roll < extra_error + cfg.retryable_rate + cfg.non_retryable_rate:
            status, error_class, code = CallStatus.ERROR, ErrorClass.NON_RETRYABLE, "400"
        elif roll < extra_error + cfg.retryable_rate + cfg.non_retryable_rate + cfg.timeout_rate:
            status, error_class, code = CallStatus.ERROR, ErrorClass.TIMEOUT, "timeout"
        elif rng.random() < cfg.partial_rate:
            status = CallStatus.PARTIAL
        return ToolCall(
            **ctx,
            event_id=self._uuid(),
            # the run's clock moves by at most max_step_ms per call, so a latency spike
            # shows in the figures without stretching the simulation by minutes
            event_time=step(min(latency, cfg.max_step_ms)),
            tool=tool,
            status=status,
            error_class=error_class,
            error_code=code,
            latency_ms=round(latency, 3),
            timeout_ms=30_000.0,
            attempt=1,
            retention=retention,
            params={"query": f"q{rng.randrange(10_000)}", "user": "jane.doe@example.com"},
            result_summary="ok" if status is CallStatus.SUCCESS else None,
        )

    def _model_call(
        self, ctx: dict[str, str], step: Callable[[float], datetime], retention: str
    ) -> ModelCall:
        rng = self._rng
        model, provider, in_price, out_price = rng.choice(_MODELS)
        tokens_in, tokens_out = rng.randint(200, 4000), rng.randint(50, 800)
        latency = rng.lognormvariate(math.log(800), 0.5)
        return ModelCall(
            **ctx,
            event_id=self._uuid(),
            event_time=step(latency),
            model=model,
            provider=provider,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=round(tokens_in / 1000 * in_price + tokens_out / 1000 * out_price, 6),
            latency_ms=round(latency, 3),
            status=CallStatus.SUCCESS,
            retention=retention,
        )

    def events(self, start: datetime | None = None) -> Iterator[tuple[float, AgentEvent]]:
        """``(offset_s, event)`` in emit order, without waiting (for tests and replays).

        With a fixed ``start`` the same seed gives equal events.
        """
        report = SimulationReport()
        yield from self._generate(report, start or datetime.now(UTC))

    def _generate(
        self, report: SimulationReport, start: datetime
    ) -> Iterator[tuple[float, AgentEvent]]:
        """Runs overlap: events come out in event-time order across runs."""
        cfg = self.config
        interval = 1.0 / cfg.runs_per_s
        pending: list[tuple[float, int, AgentEvent]] = []
        emitted = seq = n = 0
        while True:
            next_start = n * interval
            done = cfg.duration_s is not None and next_start >= cfg.duration_s
            while pending and (done or pending[0][0] <= next_start):
                offset, _, event = heapq.heappop(pending)
                if cfg.max_events is not None and emitted >= cfg.max_events:
                    return
                emitted += 1
                report.events[type(event).__name__] += 1
                yield offset, event
            if done or (cfg.max_events is not None and emitted >= cfg.max_events):
                return
            report.runs += 1
            for event in self.run_events(start + timedelta(seconds=next_start), next_start, report):
                offset = (event.event_time - start).total_seconds()
                heapq.heappush(pending, (offset, seq, event))
                seq += 1
            n += 1

    def run(
        self,
        emit: Callable[[AgentEvent], object],
        *,
        realtime: bool = True,
        on_progress: Callable[[SimulationReport], None] | None = None,
    ) -> SimulationReport:
        """Emit every event; with ``realtime`` each run starts at its scheduled wall time.

        Event times are scheduled from the simulation's start; in real time an event is
        emitted when the wall clock reaches its event time.
        """
        report = SimulationReport()
        began = time.monotonic()
        last_progress = began
        for offset, event in self._generate(report, datetime.now(UTC)):
            if realtime:
                delay = offset - (time.monotonic() - began)
                if delay > 0:
                    time.sleep(delay)
            emit(event)
            now = time.monotonic()
            if on_progress is not None and now - last_progress >= 0.5:
                report.elapsed_s = now - began
                on_progress(report)
                last_progress = now
        report.elapsed_s = time.monotonic() - began
        return report
