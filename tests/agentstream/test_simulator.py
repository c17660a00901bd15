"""The simulator: reproducible, lifecycle-shaped runs, and incidents that do what they say."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime

from agentstream.devtools.simulate import Incident, Simulation, SimulationConfig, SimulationReport
from agentstream.schemas import AgentState, CallStatus, StateTransition, ToolCall


def _events(**overrides: object) -> list[object]:
    config = SimulationConfig(duration_s=20, runs_per_s=50, **overrides)  # type: ignore[arg-type]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [event for _, event in Simulation(config).events(start)]


def test_same_seed_same_events() -> None:
    first = _events(seed=3)
    assert first == _events(seed=3)
    assert first != _events(seed=4)


def test_events_come_out_in_event_time_order() -> None:
    sim = Simulation(SimulationConfig(duration_s=10, runs_per_s=40))
    offsets = [offset for offset, _ in sim.events()]
    assert offsets == sorted(offsets)


def test_valid_runs_follow_the_lifecycle() -> None:
    runs: dict[str, list[StateTransition]] = defaultdict(list)
    for event in _events(invalid_rate=0.0, stall_rate=0.0):
        if isinstance(event, StateTransition):
            runs[event.run_id].append(event)
    assert len(runs) == 20 * 50
    for moves in runs.values():
        assert moves[0].from_state is None
        assert moves[0].to_state is AgentState.INIT
        for before, after in itertools.pairwise(moves):
            assert after.from_state is before.to_state
            assert after.event_time > before.event_time
        assert moves[-1].to_state in (AgentState.COMPLETED, AgentState.FAILED)


def test_invalid_runs_are_injected_at_the_requested_rate() -> None:
    sim = Simulation(SimulationConfig(invalid_rate=0.2, seed=11))
    report = SimulationReport()
    runs = 1000
    for _ in range(runs):
        sim.run_events(datetime(2026, 1, 1, tzinfo=UTC), 0.0, report)
    share = sum(report.invalid.values()) / runs
    assert 0.15 < share < 0.25  # binomial(1000, 0.2): 5 standard deviations wide
    assert set(report.invalid) == {"skip_review", "no_init", "backwards", "after_terminal"}


def test_incident_raises_the_tool_error_rate_only_while_active() -> None:
    incident = Incident(5.0, 10.0, tool="web_search", error_rate=0.5)
    sim = Simulation(
        SimulationConfig(
            duration_s=15, runs_per_s=100, tools=("web_search", "sql_query"), incidents=(incident,)
        )
    )
    errors: Counter[tuple[str, bool]] = Counter()
    calls: Counter[tuple[str, bool]] = Counter()
    start = None
    for offset, event in sim.events():
        del offset
        if isinstance(event, ToolCall):
            start = start or event.event_time
            # a run starting inside the incident window is affected (its calls follow it)
            key = (event.tool, 5.0 <= (event.event_time - start).total_seconds() < 10.0)
            calls[key] += 1
            errors[key] += event.status is CallStatus.ERROR
    spiked = errors[("web_search", True)] / calls[("web_search", True)]
    calm = errors[("web_search", False)] / calls[("web_search", False)]
    other = errors[("sql_query", True)] / calls[("sql_query", True)]
    assert spiked > 0.3
    assert calm < 0.15
    assert other < 0.1
