"""The ground truth of a population, computed without the engine.

This module re-derives, from the issue's rules and the settings, what the worker
must store; it imports the contracts and the settings only, never
``agentstream.processors`` or ``agentstream.sinks`` (a test checks that), so an
error of the engine cannot hide in the truth.

Rules (issue #11, with the budgets of :class:`~agentstream.core.config.LifecycleSettings`):

* **Lifecycle.** A run's first event must be ``None → INIT``; each later transition
  must name the run's state as ``from_state`` and be one of INIT→PREPARING→EXECUTING
  →REVIEWING→COMPLETED or PREPARING/EXECUTING/REVIEWING→FAILED. COMPLETED and FAILED are
  terminal. Anything else is dead-lettered (reason category below) and changes
  nothing; a redelivered event (same ``event_id``) is ignored.
* **Budgets.** INIT, PREPARING, REVIEWING: their budget from entering the state;
  EXECUTING: ``executing_budget_s`` from entering it or, after a tool call, that
  tool's budget from the call. A run still live after all its events is failed at its
  deadline by a synthesized TIMEOUT transition (``event_time`` = the deadline, dwell =
  deadline - entry); a run whose own next event comes past deadline + grace is
  failed first and the event judged against FAILED.
* **Clock sanity.** Events dated in years before 2000 or after 2100 are dead-lettered
  and counted nowhere else.
* **Rollups.** Every counted event adds to the window of its own event time, at
  1 s, 1 min and 1 h, in the scopes global, ``tenant=<t>``,
  ``tenant=<t>/agent=<a>@<v>`` and (tool calls) ``tenant=<t>/tool=<tool>``, and at 1 d
  in the tenant and agent scopes only (``rollups.daily_scope_kinds``); each
  event is counted once (duplicates by ``event_id``). Tool calls: count, status and
  error class split, latency; model calls: calls, tokens, cost (integer nano-dollars);
  accepted and synthesized transitions: runs started (→INIT), completed, failed, and
  the dwell of the state left; reviews: reviews, overrides.
* **Late events.** ``late_events`` of a window counts its counted events (synthesized
  timeouts never) that were read from their input partition after an event dated
  ``allowed_lateness`` or more past the window's end: a function of each partition's
  order (given as ``arrivals``, read from the input topics), never of the interleaving.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

from agentstream.core.config import LifecycleSettings
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
    "DAILY_SCOPE_KINDS",
    "FIGURES",
    "QUANTILES",
    "RESOLUTIONS",
    "CellTruth",
    "Timeout",
    "Truth",
    "compute_truth",
    "exact_quantile",
    "scope_keys",
    "to_us",
]

S = AgentState
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: window lengths in microseconds
RESOLUTIONS: Final[dict[str, int]] = {
    "1s": 1_000_000,
    "1m": 60_000_000,
    "1h": 3_600_000_000,
    "1d": 86_400_000_000,
}
#: the scope kinds the 1 d tier holds, unless told otherwise (``rollups.daily_scope_kinds``)
DAILY_SCOPE_KINDS: Final = ("TENANT", "AGENT")
QUANTILES: Final = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}
#: the integer figures of a rollup row that the soak compares
FIGURES: Final = (
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
    "cost_nusd",
    "model_calls",
    "runs_started",
    "runs_completed",
    "runs_failed",
    "reviews",
    "overrides",
)
_ALLOWED: Final = frozenset(
    {
        (S.INIT, S.PREPARING),
        (S.PREPARING, S.EXECUTING),
        (S.EXECUTING, S.REVIEWING),
        (S.REVIEWING, S.COMPLETED),
        (S.PREPARING, S.FAILED),
        (S.EXECUTING, S.FAILED),
        (S.REVIEWING, S.FAILED),
    }
)
_ORDER: Final = (S.INIT, S.PREPARING, S.EXECUTING, S.REVIEWING, S.COMPLETED)
_TERMINAL: Final = frozenset({S.COMPLETED, S.FAILED})
#: event times outside [2000, 2100) are absurd (the worker must dead-letter them)
_SANE_FROM: Final = datetime(2000, 1, 1, tzinfo=UTC)
_SANE_UNTIL: Final = datetime(2100, 1, 1, tzinfo=UTC)
_ERROR_FIGURE: Final = {
    ErrorClass.RETRYABLE: "retryable",
    ErrorClass.NON_RETRYABLE: "non_retryable",
    ErrorClass.TIMEOUT: "timeout",
}
_STATUS_FIGURE: Final = {
    CallStatus.SUCCESS: "success",
    CallStatus.PARTIAL: "partial",
    CallStatus.ERROR: "error",
}


def to_us(instant: datetime) -> int:
    """Microseconds since the epoch."""
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _esc(value: str) -> str:
    return quote(value, safe="") if set("%/=@") & set(value) else value


def scope_keys(
    tenant: str, agent: str, version: str, tool: str | None = None
) -> list[tuple[str, str]]:
    """``(kind, key)`` of every scope an event counts in."""
    tenant_key = f"tenant={_esc(tenant)}"
    keys = [
        ("GLOBAL", "global"),
        ("TENANT", tenant_key),
        ("AGENT", f"{tenant_key}/agent={_esc(agent)}@{_esc(version)}"),
    ]
    if tool is not None:
        keys.append(("TOOL", f"{tenant_key}/tool={_esc(tool)}"))
    return keys


def exact_quantile(values: list[float], q: float) -> float:
    """The lower quantile of sorted ``values``: the element at rank ``floor(q * (n - 1))``."""
    return values[math.floor(q * (len(values) - 1))]


@dataclass
class CellTruth:
    """The figures of one scope in one window."""

    kind: str
    figures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIGURES, 0))
    state_ms: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def quantiles(self) -> dict[str, float | None]:
        """The exact latency quantiles (None without tool calls)."""
        values = sorted(self.latencies)
        return {
            name: exact_quantile(values, q) if values else None for name, q in QUANTILES.items()
        }


@dataclass(frozen=True)
class Timeout:
    """A synthesized TIMEOUT failure: the state it ends, and its deadline."""

    from_state: str
    deadline_us: int


@dataclass
class Truth:
    """What the worker must store for a population."""

    #: table → event ids (tool_calls, model_calls, review_decisions)
    records: dict[str, set[str]] = field(default_factory=dict)
    #: accepted (not synthesized) transitions' event ids
    transitions: set[str] = field(default_factory=set)
    #: run id → its synthesized TIMEOUT
    timeouts: dict[str, Timeout] = field(default_factory=dict)
    runs_completed: set[str] = field(default_factory=set)
    runs_failed: set[str] = field(default_factory=set)
    #: reason category → event ids dead-lettered
    dead_letters: dict[str, set[str]] = field(default_factory=dict)
    #: (resolution, window start µs, scope key) → figures
    cells: dict[tuple[str, int, str], CellTruth] = field(default_factory=dict)

    def dead_letter_category(self, event_id: str) -> str | None:
        """The category of an expected dead letter, None if none is expected."""
        for category, ids in self.dead_letters.items():
            if event_id in ids:
                return category
        return None


def _category(current: AgentState | None, tr: StateTransition) -> str:
    """The reason category of a refused transition ("" when it is accepted)."""
    if current is None:
        if tr.to_state is S.INIT and tr.from_state is None:
            return ""
        return "no INIT first"
    if current in _TERMINAL:
        return "after terminal state"
    if tr.to_state is S.INIT:
        return "INIT again"
    if tr.from_state is not current:
        return "from_state mismatch"
    if (tr.from_state, tr.to_state) in _ALLOWED:
        return ""
    if tr.to_state is S.FAILED or tr.to_state is tr.from_state:
        return "not a move"
    if _ORDER.index(tr.to_state) < _ORDER.index(tr.from_state):
        return "goes backwards"
    return "skips a state"


@dataclass
class _Run:
    state: AgentState
    entered: int
    budget_from: int
    tool: str | None
    seen: set[str]


class _Lifecycle:
    """One run at a time, its events in order (they share a partition and a topic)."""

    def __init__(self, settings: LifecycleSettings, truth: Truth) -> None:
        self.s = settings
        self.truth = truth
        self.runs: dict[str, _Run] = {}
        self.calls: dict[str, list[tuple[int, str]]] = {}
        self.accepted: list[tuple[StateTransition, int | None]] = []
        self.synthesized: list[tuple[StateTransition, int, int]] = []

    def budget(self, state: AgentState, tool: str | None) -> float:
        s = self.s
        if state is S.INIT:
            return s.init_budget_s
        if state is S.PREPARING:
            return s.preparing_budget_s
        if state is S.EXECUTING:
            if tool is not None:
                return s.executing_budget_by_tool_s.get(tool, s.executing_budget_s)
            return s.executing_budget_s
        return s.reviewing_budget_s

    def deadline(self, run: _Run) -> int:
        return run.budget_from + round(self.budget(run.state, run.tool) * 1_000_000)

    def tool_call(self, call: ToolCall) -> None:
        self.calls.setdefault(call.run_id, []).append((to_us(call.event_time), call.tool))

    def _observe_calls(self, run_id: str, run: _Run, until: int) -> None:
        """Tool calls of an EXECUTING run up to ``until`` move its budget (per tool)."""
        if run.state is not S.EXECUTING:
            return
        for at, tool in self.calls.get(run_id, ()):
            if run.budget_from <= at <= until and (at, tool) != (run.budget_from, run.tool):
                run.budget_from, run.tool = at, tool

    def _time_out(self, tr: StateTransition, run: _Run) -> None:
        deadline = self.deadline(run)
        self.truth.timeouts[tr.run_id] = Timeout(run.state.value, deadline)
        self.truth.runs_failed.add(tr.run_id)
        self.synthesized.append((tr, deadline, (deadline - run.entered) // 1000))
        run.state, run.entered, run.budget_from, run.tool = S.FAILED, deadline, deadline, None

    def transition(self, tr: StateTransition) -> None:
        run = self.runs.get(tr.run_id)
        t = to_us(tr.event_time)
        if run is not None:
            if tr.event_id in run.seen:
                return
            run.seen.add(tr.event_id)
            self._observe_calls(tr.run_id, run, t)
            grace = round(self.s.timeout_grace_s * 1_000_000)
            if run.state not in _TERMINAL and t > self.deadline(run) + grace:
                self._time_out(tr, run)
        problem = _category(run.state if run is not None else None, tr)
        if problem:
            self.truth.dead_letters.setdefault(problem, set()).add(tr.event_id)
            return
        self.truth.transitions.add(tr.event_id)
        if run is None:
            self.runs[tr.run_id] = _Run(S.INIT, t, t, None, {tr.event_id})
            self.accepted.append((tr, None))
            return
        entered = max(t, run.entered)
        self.accepted.append((tr, (entered - run.entered) // 1000))
        run.state, run.entered, run.budget_from, run.tool = tr.to_state, entered, entered, None
        if tr.to_state is S.COMPLETED:
            self.truth.runs_completed.add(tr.run_id)
        elif tr.to_state is S.FAILED:
            self.truth.runs_failed.add(tr.run_id)

    def finish(self, by_run: dict[str, StateTransition]) -> None:
        """Every run still live after its last event times out at its deadline."""
        for run_id, run in self.runs.items():
            if run.state in _TERMINAL:
                continue
            self._observe_calls(run_id, run, 2**62)
            self._time_out(by_run[run_id], run)


def _sane(event: AgentEvent) -> bool:
    return _SANE_FROM <= event.event_time < _SANE_UNTIL


def compute_truth(
    events: Iterable[AgentEvent],
    lifecycle: LifecycleSettings,
    arrivals: Mapping[str, int] | None = None,
    lateness_s: float = 0.0,
    daily_scope_kinds: Iterable[str] = DAILY_SCOPE_KINDS,
) -> Truth:
    """The truth of ``events`` (in production order; duplicates may be included).

    ``arrivals``: per event id, the newest event time (µs) read on its input partition
    before it (:mod:`.arrivals`); an event counts in ``late_events`` when its 1 s
    window ended ``lateness_s`` or more before that. None: no event is late. The 1 d
    windows hold only the scopes of ``daily_scope_kinds``.
    """
    daily = frozenset(str(kind) for kind in daily_scope_kinds)
    lateness = round(lateness_s * 1_000_000)
    read_at = arrivals or {}

    def is_late(event: AgentEvent, at_us: int) -> int:
        before = read_at.get(event.event_id)
        end = at_us - at_us % 1_000_000 + 1_000_000
        return int(before is not None and end <= before - lateness)

    truth = Truth(records={"tool_calls": set(), "model_calls": set(), "review_decisions": set()})
    machine = _Lifecycle(lifecycle, truth)
    seen: set[str] = set()
    counted: list[AgentEvent] = []
    first: dict[str, StateTransition] = {}
    for event in events:
        if not _sane(event):
            truth.dead_letters.setdefault("absurd event time", set()).add(event.event_id)
            continue
        if isinstance(event, ToolCall):
            machine.tool_call(event)
        if isinstance(event, StateTransition):
            first.setdefault(event.run_id, event)
            machine.transition(event)
            continue
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        counted.append(event)
    machine.finish(first)

    cells = truth.cells

    def cells_of(event: AgentEvent, at_us: int, tool: str | None = None) -> list[CellTruth]:
        out = []
        for kind, key in scope_keys(event.tenant_id, event.agent_id, event.agent_version, tool):
            for resolution, length in RESOLUTIONS.items():
                if resolution == "1d" and kind not in daily:
                    continue
                start = at_us - at_us % length
                cell = cells.get((resolution, start, key))
                if cell is None:
                    cell = cells[(resolution, start, key)] = CellTruth(kind)
                out.append(cell)
        return out

    for event in counted:
        at = to_us(event.event_time)
        late = is_late(event, at)
        for cell in cells_of(event, at, event.tool if isinstance(event, ToolCall) else None):
            cell.figures["late_events"] += late
        if isinstance(event, ToolCall):
            truth.records["tool_calls"].add(event.event_id)
            for cell in cells_of(event, at, event.tool):
                f = cell.figures
                f["count"] += 1
                f[_STATUS_FIGURE[event.status]] += 1
                if event.error_class in _ERROR_FIGURE:
                    f[_ERROR_FIGURE[event.error_class]] += 1
                cell.latencies.append(event.latency_ms)
        elif isinstance(event, ModelCall):
            truth.records["model_calls"].add(event.event_id)
            cost = round(event.cost_usd * 1_000_000_000)
            for cell in cells_of(event, at):
                f = cell.figures
                f["model_calls"] += 1
                f["tokens_in"] += event.input_tokens
                f["tokens_out"] += event.output_tokens
                f["cost_nusd"] += cost
        elif isinstance(event, ReviewDecision):
            truth.records["review_decisions"].add(event.event_id)
            for cell in cells_of(event, at):
                cell.figures["reviews"] += 1
                if event.decision is Decision.OVERRIDDEN:
                    cell.figures["overrides"] += 1

    def count_transition(
        tr: StateTransition,
        at: int,
        to: AgentState,
        source: AgentState | None,
        dwell: int | None,
        late: int = 0,
    ) -> None:
        figure = {
            S.INIT: "runs_started",
            S.COMPLETED: "runs_completed",
            S.FAILED: "runs_failed",
        }.get(to)
        for cell in cells_of(tr, at):
            cell.figures["late_events"] += late
            if figure is not None:
                cell.figures[figure] += 1
            if dwell and source is not None:
                cell.state_ms[source.value] = cell.state_ms.get(source.value, 0) + dwell

    for tr, dwell in machine.accepted:
        at = to_us(tr.event_time)
        count_transition(tr, at, tr.to_state, tr.from_state, dwell, is_late(tr, at))
    for tr, deadline, dwell in machine.synthesized:
        source = AgentState(truth.timeouts[tr.run_id].from_state)
        count_transition(tr, deadline, S.FAILED, source, dwell)  # never late
    return truth
