"""A population of runs and its ground truth, computed here without the processors.

Each run: INIT, PREPARING, EXECUTING, a tool call, REVIEWING, then COMPLETED, unless it
stalls in REVIEWING: then its truth is a TIMEOUT failure dated at REVIEWING + the budget.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agentstream.core.config import Settings
from agentstream.schemas import (
    AgentEvent,
    AgentState,
    CallStatus,
    InvalidEvent,
    Rollup,
    StateTransition,
    ToolCall,
    encode_model,
)
from tests.support.engine import read_committed

S = AgentState
CTX = {"tenant_id": "acme", "user_id": "u1", "agent_id": "planner", "agent_version": "1.0"}
PATH = (S.INIT, S.PREPARING, S.EXECUTING, S.REVIEWING)


@dataclass
class Truth:
    """What the processors must produce, computed from the population."""

    #: run_id -> final state (COMPLETED, or FAILED by timeout)
    final: dict[str, AgentState] = field(default_factory=dict)
    #: (resolution, window start, figure) -> value, for the global scope
    windows: Counter[tuple[str, datetime, str]] = field(default_factory=Counter)

    def count(self, at: datetime, figure: str) -> None:
        for resolution, length in (("1s", 1), ("1m", 60)):
            start = at.replace(microsecond=0)
            start -= timedelta(seconds=start.second % length)
            self.windows[(resolution, start, figure)] += 1


def population(
    seed: int, runs: int, start: datetime, spacing_ms: int, review_budget_s: float = 2.0
) -> tuple[list[AgentEvent], Truth]:
    """Runs ``spacing_ms`` apart from ``start``; about a tenth stall in REVIEWING."""
    rng = random.Random(seed)
    events: list[AgentEvent] = []
    truth = Truth()
    for n in range(runs):
        run = f"r{seed}-{n}"
        at = start + timedelta(milliseconds=n * spacing_ms)
        previous: AgentState | None = None
        for state in PATH:
            at += timedelta(milliseconds=5)
            events.append(
                StateTransition(
                    **CTX, run_id=run, event_time=at, from_state=previous, to_state=state
                )
            )
            if state is S.INIT:
                truth.count(at, "runs_started")
            previous = state
            if state is S.EXECUTING:
                at += timedelta(milliseconds=3)
                events.append(
                    ToolCall(
                        **CTX,
                        run_id=run,
                        event_time=at,
                        tool=rng.choice(("search", "sql")),
                        status=CallStatus.SUCCESS,
                        latency_ms=rng.uniform(1, 500),
                    )
                )
                truth.count(at, "count")
        if rng.random() < 0.1:
            truth.final[run] = S.FAILED
            truth.count(at + timedelta(seconds=review_budget_s), "runs_failed")
            continue
        at += timedelta(milliseconds=5)
        events.append(
            StateTransition(
                **CTX, run_id=run, event_time=at, from_state=S.REVIEWING, to_state=S.COMPLETED
            )
        )
        truth.final[run] = S.COMPLETED
        truth.count(at, "runs_completed")
    return events, truth


def records(events: Sequence[AgentEvent]) -> list[tuple[str, str, bytes]]:
    return [
        ("tool_calls" if isinstance(e, ToolCall) else "transitions", e.run_id, encode_model(e))
        for e in events
    ]


FIGURES = ("count", "runs_started", "runs_completed", "runs_failed")


def stored(settings: Settings) -> tuple[dict[str, list[AgentState]], Counter[Any], list[Any]]:
    """Per run the states published (in event-time order), the latest global rollups' figures
    per window (what a table keeping the latest ``computed_at`` holds), the dead letters."""
    by_run: dict[str, list[StateTransition]] = {}
    seen: set[str] = set()
    for r in read_committed(settings, "lifecycle"):
        if isinstance(r, StateTransition) and r.event_id not in seen:
            seen.add(r.event_id)
            by_run.setdefault(r.run_id, []).append(r)
    states = {
        run: [e.to_state for e in sorted(evs, key=lambda e: e.event_time)]
        for run, evs in by_run.items()
    }
    latest: dict[tuple[str, datetime], Rollup] = {}
    for r in read_committed(settings, "rollups"):
        if isinstance(r, Rollup) and r.scope_key == "global":
            key = (r.resolution, r.window_start)
            if key not in latest or r.computed_at >= latest[key].computed_at:
                latest[key] = r
    windows: Counter[Any] = Counter()
    for (resolution, start), r in latest.items():
        if resolution in ("1s", "1m"):
            for figure in FIGURES:
                if getattr(r, figure):
                    windows[(resolution, start, figure)] = getattr(r, figure)
    dead = [r for r in read_committed(settings, "invalid") if isinstance(r, InvalidEvent)]
    return states, windows, dead


def check(
    settings: Settings, truth: Truth, *, extra_dead: int = 0, ended_by: datetime | None = None
) -> list[Any]:
    """Lifecycle, rollups and dead letters against the truth; the dead letters.

    ``ended_by``: compare only the windows ending by then (live traffic: the current
    minute cannot have been emitted yet).
    """
    states, windows, dead = stored(settings)
    if ended_by is not None:
        length = {"1s": timedelta(seconds=1), "1m": timedelta(minutes=1)}

        def ended(key: tuple[str, datetime, str]) -> bool:
            return key[1] + length[key[0]] <= ended_by

        truth = Truth(truth.final, Counter({k: v for k, v in truth.windows.items() if ended(k)}))
        windows = Counter({k: v for k, v in windows.items() if ended(k)})
    _check_runs(states, dead, truth, extra_dead)
    diff = {k: (windows.get(k, 0), v) for k, v in truth.windows.items() if windows.get(k, 0) != v}
    diff |= {k: (v, 0) for k, v in windows.items() if k not in truth.windows and k[2] in FIGURES}
    assert not diff, f"{len(diff)} window figures differ (stored, truth): {list(diff.items())[:5]}"
    return dead


def _check_runs(
    states: dict[str, list[AgentState]], dead: list[Any], truth: Truth, extra_dead: int
) -> None:
    full = [*PATH, S.COMPLETED]
    wrong = {
        run: got
        for run, want in truth.final.items()
        if (got := states.get(run)) != (full if want is S.COMPLETED else [*PATH, S.FAILED])
    }
    assert not wrong, f"{len(wrong)} runs differ, e.g. {list(wrong.items())[:3]}"
    assert len(dead) == extra_dead, [d.reason for d in dead[:5]]


def check_lifecycle(settings: Settings, truth: Truth, *, extra_dead: int = 0) -> list[Any]:
    """The lifecycle verdicts (each run's published states, the dead letters) against the
    truth, rollups left out; the dead letters."""
    states, _, dead = stored(settings)
    _check_runs(states, dead, truth, extra_dead)
    return dead


def finished(settings: Settings, truth: Truth) -> bool:
    """Every run of the truth has its verdict (COMPLETED or FAILED) committed."""
    final: dict[str, AgentState] = {}
    for r in read_committed(settings, "lifecycle"):
        if isinstance(r, StateTransition) and r.to_state in (S.COMPLETED, S.FAILED):
            final[r.run_id] = r.to_state
    return all(run in final for run in truth.final)
