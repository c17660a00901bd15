"""Throughput of the pure cores (lifecycle + rollups) on a mixed workload; prints, asserts nothing.

    python -m processors._throughput [--events 100000] [--rate 20000] [--seed 1]

Builds the events first (not timed), then times what the worker does per event
minus Kafka and Avro: the lifecycle state machine on transitions (table reads
and writes on a dict, deadline index, event clock), the per-tool deadline on tool
calls, the rollup aggregator on every event (transitions: the accepted ones, as
the rollups read the lifecycle output), ``advance`` and a timer sweep every
1,000 events, table changes drained every ``rate`` events (once per second of
event time), and the final close of every window.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from agentstream.config import LifecycleSettings, RollupSettings
from processors._clock import to_us
from processors.lifecycle import Accepted, Rejected, RunState, TimeoutTracker, apply
from processors.lifecycle import observe_tool_call as observe_call
from processors.rollups import RollupAggregator, RollupEvent
from schemas import (
    AgentState,
    CallStatus,
    Decision,
    ErrorClass,
    ModelCall,
    ReviewDecision,
    StateTransition,
    ToolCall,
)

__all__ = ["main", "workload"]

_S = AgentState


def workload(n: int, rate: float, seed: int) -> list[RollupEvent]:
    """About ``n`` events of concurrent runs, ``rate`` events per second of event time.

    A run: INIT, PREPARING, EXECUTING, 6-10 tool calls, 1-3 model calls,
    REVIEWING, a review decision, COMPLETED (5 % FAILED instead); 2 % of the
    transitions are invalid moves and 1 % are redelivered duplicates.
    """
    rng = random.Random(seed)
    t0 = datetime(2025, 1, 1, 12, tzinfo=UTC)
    out: list[RollupEvent] = []
    active: list[list[RollupEvent]] = []
    run_no = 0
    while len(out) < n:
        while len(active) < 200:
            active.append(_run(rng, run_no))
            run_no += 1
        run = active[rng.randrange(len(active))]
        event = run.pop(0)
        at = t0 + timedelta(seconds=len(out) / rate)
        out.append(event.model_copy(update={"event_time": at}))
        if rng.random() < 0.01 and isinstance(event, StateTransition):
            out.append(out[-1])  # redelivery
        if not run:
            active.remove(run)
    return out[:n]


def _run(rng: random.Random, no: int) -> list[RollupEvent]:
    agent = rng.randrange(10)
    ctx = {
        "tenant_id": f"tenant-{rng.randrange(20)}",
        "user_id": "u",
        "agent_id": f"agent-{agent}",
        "agent_version": f"1.{rng.randrange(2)}",
        "run_id": f"run-{no}",
    }

    def move(source: AgentState | None, target: AgentState) -> StateTransition:
        return StateTransition(**ctx, from_state=source, to_state=target)

    events: list[RollupEvent] = [
        move(None, _S.INIT),
        move(_S.INIT, _S.PREPARING),
        move(_S.PREPARING, _S.EXECUTING),
    ]
    for _ in range(rng.randrange(6, 11)):
        ok = rng.random() < 0.95
        events.append(
            ToolCall(
                **ctx,
                tool=f"tool-{rng.randrange(15)}",
                status=CallStatus.SUCCESS if ok else CallStatus.ERROR,
                error_class=ErrorClass.NONE if ok else ErrorClass.RETRYABLE,
                latency_ms=rng.lognormvariate(5.5, 1.0),
            )
        )
    for _ in range(rng.randrange(1, 4)):
        events.append(
            ModelCall(
                **ctx,
                model="m",
                provider="p",
                input_tokens=rng.randrange(4000),
                output_tokens=rng.randrange(600),
                cost_usd=rng.uniform(0, 0.02),
                latency_ms=rng.lognormvariate(6.5, 0.5),
                status=CallStatus.SUCCESS,
            )
        )
    if rng.random() < 0.02:
        events.append(move(_S.EXECUTING, _S.COMPLETED))  # invalid: skips REVIEWING
    events.append(move(_S.EXECUTING, _S.REVIEWING))
    events.append(ReviewDecision(**ctx, reviewer="r", decision=rng.choice(list(Decision))))
    events.append(move(_S.REVIEWING, _S.FAILED if rng.random() < 0.05 else _S.COMPLETED))
    return events


def _timed(label: str, n: int, body: Callable[[], None]) -> float:
    wall, cpu = time.perf_counter(), time.process_time()
    body()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<46} {n / cpu:>9,.0f} events/s  (cpu {cpu:6.3f} s, wall {wall:6.3f} s)")
    return n / cpu


def main(argv: list[str] | None = None) -> int:
    """Measure and print; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=20_000.0, help="event-time events/s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    events = workload(args.events, args.rate, args.seed)
    gc.collect()
    gc.freeze()  # the prepared events are not garbage the worker would have to scan
    lifecycle = LifecycleSettings()
    rollup_settings = RollupSettings()
    transitions = [e for e in events if isinstance(e, StateTransition)]
    counts: dict[str, int] = {}

    def lifecycle_only() -> None:
        runs: dict[str, RunState] = {}
        tracker = TimeoutTracker(lifecycle)
        for i, ev in enumerate(events):
            t = to_us(ev.event_time)
            tracker.observe(t, t)
            if isinstance(ev, StateTransition):
                out = apply(runs.get(ev.run_id), ev, lifecycle)
                if isinstance(out, Accepted | Rejected) and out.state is not None:
                    runs[ev.run_id] = out.state
                    tracker.track(out.state)
            elif isinstance(ev, ToolCall):
                run = runs.get(ev.run_id)
                new = observe_call(run, ev.tool, t, lifecycle)
                if new is not run and new is not None:
                    runs[ev.run_id] = new
                    tracker.track(new)
            if i % 1000 == 0:
                tracker.sweep(runs.get, t)

    def rollups_only() -> None:
        agg = RollupAggregator(rollup_settings)
        emitted = 0
        for i, ev in enumerate(events):
            agg.add(ev)
            if i % 1000 == 0:
                emitted += len(agg.advance())
            if i % int(args.rate) == 0:
                agg.drain_changes()
        emitted += len(agg.advance(to_us(datetime(2030, 1, 1, tzinfo=UTC))))
        counts["rollups"] = emitted

    def both() -> None:
        runs: dict[str, RunState] = {}
        tracker = TimeoutTracker(lifecycle)
        agg = RollupAggregator(rollup_settings)
        accepted = rejected = duplicates = 0
        for i, ev in enumerate(events):
            t = to_us(ev.event_time)
            tracker.observe(t, t)
            if isinstance(ev, StateTransition):
                out = apply(runs.get(ev.run_id), ev, lifecycle)
                if isinstance(out, Accepted):
                    runs[ev.run_id] = out.state
                    tracker.track(out.state)
                    agg.add_transition(out.transition)
                    accepted += 1
                elif isinstance(out, Rejected):
                    if out.state is not None:
                        runs[ev.run_id] = out.state
                        tracker.track(out.state)
                    rejected += 1
                else:
                    duplicates += 1
            else:
                if isinstance(ev, ToolCall):
                    run = runs.get(ev.run_id)
                    new = observe_call(run, ev.tool, t, lifecycle)
                    if new is not run and new is not None:
                        runs[ev.run_id] = new
                        tracker.track(new)
                agg.add(ev)
            if i % 1000 == 0:
                agg.advance()
                tracker.sweep(runs.get, t)
            if i % int(args.rate) == 0:
                agg.drain_changes()
        agg.advance(to_us(datetime(2030, 1, 1, tzinfo=UTC)))
        counts.update(accepted=accepted, rejected=rejected, duplicates=duplicates)

    print(f"workload: {len(events)} events, {len(transitions)} transitions, seed {args.seed}")
    print("events/s per CPU second of this process (wall time depends on the machine's load)")
    _timed("lifecycle (apply, tool-call deadlines, timer)", len(events), lifecycle_only)
    _timed("rollups (add, advance, drain, final close)", len(events), rollups_only)
    _timed("both, as the worker chains them", len(events), both)
    print(f"rollups emitted: {counts['rollups']}; transitions accepted {counts['accepted']}, ")
    print(f"rejected {counts['rejected']}, duplicates {counts['duplicates']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
