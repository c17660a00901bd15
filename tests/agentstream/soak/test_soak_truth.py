"""The soak's truth on tiny hand-made populations, with the expected values written by hand."""

from __future__ import annotations

import ast
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import agentstream.devtools.soak as soak_package
from agentstream.core.config import LifecycleSettings
from agentstream.devtools.soak.arrivals import newest_before
from agentstream.devtools.soak.compare import (
    Stored,
    StoredCell,
    cell_differences,
    compare,
    differences,
    write_cell_differences,
)
from agentstream.devtools.soak.population import (
    PopulationConfig,
    generate,
    murmur2,
    partition_of,
)
from agentstream.devtools.soak.truth import (
    RESOLUTIONS,
    Timeout,
    compute_truth,
    exact_quantile,
    scope_keys,
    to_us,
)
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

S = AgentState
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T0_US = to_us(T0)
SETTINGS = LifecycleSettings(
    init_budget_s=10,
    preparing_budget_s=10,
    executing_budget_s=20,
    reviewing_budget_s=30,
    timeout_grace_s=2,
)


def ctx(run: str, tenant: str = "acme") -> dict[str, str]:
    return {
        "tenant_id": tenant,
        "user_id": "u",
        "agent_id": "planner",
        "agent_version": "1.0",
        "run_id": run,
    }


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def move(run: str, ms: int, src: AgentState | None, dst: AgentState, eid: str) -> StateTransition:
    return StateTransition(
        **ctx(run), event_id=eid, event_time=at(ms), from_state=src, to_state=dst
    )


def call(run: str, ms: int, eid: str, latency: float = 100.0, **kw: object) -> ToolCall:
    fields: dict[str, object] = {"tool": "search", "status": CallStatus.SUCCESS, **kw}
    return ToolCall(**ctx(run), event_id=eid, event_time=at(ms), latency_ms=latency, **fields)


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def complete_run() -> list[AgentEvent]:
    r = "run-ok"
    return [
        move(r, 0, None, S.INIT, uid(1)),
        move(r, 100, S.INIT, S.PREPARING, uid(2)),
        move(r, 200, S.PREPARING, S.EXECUTING, uid(3)),
        call(
            r, 300, uid(4), latency=120.0, status=CallStatus.ERROR, error_class=ErrorClass.RETRYABLE
        ),
        ModelCall(
            **ctx(r),
            event_id=uid(5),
            event_time=at(400),
            model="m",
            provider="p",
            input_tokens=1000,
            output_tokens=200,
            cost_usd=0.0035,
            latency_ms=800.0,
            status=CallStatus.SUCCESS,
        ),
        move(r, 500, S.EXECUTING, S.REVIEWING, uid(6)),
        ReviewDecision(
            **ctx(r),
            event_id=uid(7),
            event_time=at(600),
            reviewer="x",
            decision=Decision.OVERRIDDEN,
        ),
        move(r, 700, S.REVIEWING, S.COMPLETED, uid(8)),
    ]


def test_a_complete_run_counts_once_in_its_second_minute_and_hour() -> None:
    events = complete_run()
    truth = compute_truth([*events, events[3], events[4], events[1]], SETTINGS)  # duplicates

    assert truth.transitions == {uid(1), uid(2), uid(3), uid(6), uid(8)}
    assert truth.runs_completed == {"run-ok"}
    assert truth.runs_failed == set()
    assert truth.timeouts == {}
    assert truth.dead_letters == {}
    assert truth.records == {
        "tool_calls": {uid(4)},
        "model_calls": {uid(5)},
        "review_decisions": {uid(7)},
    }
    # 4 scopes for the tool call (global, tenant, agent, tool) x 3 resolutions, and the
    # tenant and agent scopes at 1 d
    assert len(truth.cells) == 4 * 3 + 2
    assert {key for r, _, key in truth.cells if r == "1d"} == {
        "tenant=acme",
        "tenant=acme/agent=planner@1.0",
    }
    for resolution in ("1s", "1m", "1h"):
        cell = truth.cells[(resolution, T0_US, "global")]
        assert {k: v for k, v in cell.figures.items() if v} == {
            "count": 1,
            "error": 1,
            "retryable": 1,
            "tokens_in": 1000,
            "tokens_out": 200,
            "cost_nusd": 3_500_000,
            "model_calls": 1,
            "runs_started": 1,
            "runs_completed": 1,
            "reviews": 1,
            "overrides": 1,
        }
        assert cell.state_ms == {"INIT": 100, "PREPARING": 100, "EXECUTING": 300, "REVIEWING": 200}
        assert cell.quantiles() == {
            "latency_p50": 120.0,
            "latency_p95": 120.0,
            "latency_p99": 120.0,
        }
    tool = truth.cells[("1s", T0_US, "tenant=acme/tool=search")]
    assert tool.kind == "TOOL"
    assert tool.figures["count"] == 1
    assert tool.figures["model_calls"] == 0  # model calls have no tool scope


def test_a_stalled_run_times_out_at_its_deadline_in_the_deadlines_window() -> None:
    r = "stalls"
    events = [
        move(r, 0, None, S.INIT, uid(1)),
        move(r, 500, S.INIT, S.PREPARING, uid(2)),
        move(r, 900, S.PREPARING, S.EXECUTING, uid(3)),
        move(r, 1500, S.EXECUTING, S.REVIEWING, uid(4)),
    ]
    truth = compute_truth(events, SETTINGS)

    deadline = T0_US + 1_500_000 + 30_000_000  # REVIEWING entered at 1.5 s + its 30 s budget
    assert truth.timeouts == {r: Timeout("REVIEWING", deadline)}
    assert truth.runs_failed == {r}
    cell = truth.cells[("1s", deadline - deadline % 1_000_000, "global")]
    assert cell.figures["runs_failed"] == 1
    assert cell.state_ms == {"REVIEWING": 30_000}
    first = truth.cells[("1s", T0_US, "global")]
    assert first.figures["runs_started"] == 1
    assert first.state_ms == {"INIT": 500, "PREPARING": 400}
    assert truth.cells[("1s", T0_US + 1_000_000, "global")].state_ms == {"EXECUTING": 600}
    minute = truth.cells[("1m", T0_US, "global")]
    assert minute.figures["runs_failed"] == 1
    assert minute.state_ms == {"INIT": 500, "PREPARING": 400, "EXECUTING": 600, "REVIEWING": 30_000}


def test_invalid_transitions_are_dead_lettered_by_reason_and_stuck_runs_time_out() -> None:
    events = [
        move("noinit", 0, S.INIT, S.PREPARING, uid(1)),
        move("skip", 0, None, S.INIT, uid(2)),
        move("skip", 100, S.INIT, S.PREPARING, uid(3)),
        move("skip", 200, S.PREPARING, S.EXECUTING, uid(4)),
        move("skip", 300, S.EXECUTING, S.COMPLETED, uid(5)),
        move("back", 0, None, S.INIT, uid(6)),
        move("back", 100, S.INIT, S.PREPARING, uid(7)),
        move("back", 200, S.PREPARING, S.INIT, uid(8)),
        move("mismatch", 0, None, S.INIT, uid(9)),
        move("mismatch", 100, S.REVIEWING, S.COMPLETED, uid(10)),
        move("done", 0, None, S.INIT, uid(11)),
        move("done", 100, S.INIT, S.PREPARING, uid(12)),
        move("done", 200, S.PREPARING, S.FAILED, uid(13)),
        move("done", 300, S.FAILED, S.EXECUTING, uid(14)),
        move("back2", 0, None, S.INIT, uid(15)),
        move("back2", 100, S.INIT, S.PREPARING, uid(16)),
        move("back2", 200, S.PREPARING, S.EXECUTING, uid(17)),
        move("back2", 300, S.EXECUTING, S.PREPARING, uid(18)),
    ]
    truth = compute_truth(events, SETTINGS)

    assert truth.dead_letters == {
        "no INIT first": {uid(1)},
        "skips a state": {uid(5)},
        "INIT again": {uid(8)},
        "from_state mismatch": {uid(10)},
        "after terminal state": {uid(14)},
        "goes backwards": {uid(18)},
    }
    assert truth.timeouts == {
        "skip": Timeout("EXECUTING", T0_US + 200_000 + 20_000_000),
        "back": Timeout("PREPARING", T0_US + 100_000 + 10_000_000),
        "mismatch": Timeout("INIT", T0_US + 10_000_000),
        "back2": Timeout("EXECUTING", T0_US + 200_000 + 20_000_000),
    }
    assert truth.runs_failed == {"skip", "back", "mismatch", "done", "back2"}
    assert truth.runs_completed == set()
    assert truth.cells[("1s", T0_US, "global")].figures["runs_started"] == 5


def test_a_run_whose_next_event_comes_past_its_deadline_is_failed_first() -> None:
    events = [
        move("slow", 0, None, S.INIT, uid(1)),
        move("slow", 12_001, S.INIT, S.PREPARING, uid(2)),  # past 10 s + 2 s grace
        move("ontime", 0, None, S.INIT, uid(3)),
        move("ontime", 12_000, S.INIT, S.PREPARING, uid(4)),  # exactly at deadline + grace
    ]
    truth = compute_truth(events, SETTINGS)

    assert truth.timeouts["slow"] == Timeout("INIT", T0_US + 10_000_000)
    assert truth.dead_letters == {"after terminal state": {uid(2)}}
    assert uid(4) in truth.transitions
    assert truth.timeouts["ontime"] == Timeout("PREPARING", T0_US + 12_000_000 + 10_000_000)


def test_tool_calls_move_an_executing_runs_deadline_by_the_tools_budget() -> None:
    settings = SETTINGS.model_copy(update={"executing_budget_by_tool_s": {"slow_tool": 60.0}})
    events: list[AgentEvent] = [
        move("r", 0, None, S.INIT, uid(1)),
        move("r", 100, S.INIT, S.PREPARING, uid(2)),
        move("r", 200, S.PREPARING, S.EXECUTING, uid(3)),
        call("r", 1_000, uid(4), tool="slow_tool"),
    ]
    truth = compute_truth(events, settings)

    assert truth.timeouts == {"r": Timeout("EXECUTING", T0_US + 1_000_000 + 60_000_000)}


def test_absurd_event_times_are_only_dead_letters() -> None:
    events = [
        call("c1", 0, uid(1)).model_copy(update={"event_time": datetime(9999, 1, 1, tzinfo=UTC)}),
        call("c2", 0, uid(2)).model_copy(update={"event_time": datetime(1970, 1, 2, tzinfo=UTC)}),
    ]
    truth = compute_truth(events, SETTINGS)

    assert truth.dead_letters == {"absurd event time": {uid(1), uid(2)}}
    assert truth.records["tool_calls"] == set()
    assert truth.cells == {}


def test_late_events_follow_each_partitions_order() -> None:
    events = complete_run()
    tool = events[3]  # 300 ms: its 1 s window [0, 1 s) ends at 1 s
    # read on its partition after an event dated 4.5 s: 4.5 - 3 (lateness) >= 1: late
    late = newest_before([[("other", at(4_500)), (tool.event_id, tool.event_time)]])
    # after one dated 3.5 s: 3.5 - 3 < 1: on time
    on_time = newest_before([[("other", at(3_500)), (tool.event_id, tool.event_time)]])
    # absurd times move no clock; a duplicate keeps its first reading
    absurd = newest_before(
        [
            [
                (tool.event_id, tool.event_time),
                ("clock", datetime(9999, 1, 1, tzinfo=UTC)),
                ("other", at(9_000)),
                (tool.event_id, tool.event_time),
            ]
        ]
    )
    assert late[tool.event_id] == T0_US + 4_500_000
    assert absurd == {tool.event_id: T0_US + 300_000, "other": T0_US + 9_000_000}

    def late_events(arrivals: dict[str, int] | None) -> dict[str, int]:
        truth = compute_truth(events, SETTINGS, arrivals, lateness_s=3)
        return {
            r: c.figures["late_events"] for (r, _, key), c in truth.cells.items() if key == "global"
        }

    assert late_events(late) == {"1s": 1, "1m": 1, "1h": 1}
    assert late_events(on_time) == {"1s": 0, "1m": 0, "1h": 0}
    assert late_events(None) == {"1s": 0, "1m": 0, "1h": 0}
    # a transition counts too (an accepted one: its own window's late_events)
    init = events[0]
    assert late_events({init.event_id: T0_US + 60_000_000})["1m"] == 1


def test_quantiles_are_the_lower_quantile_at_rank_q_times_n_minus_1() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert exact_quantile(values, 0.5) == 50.0  # rank 49.5 -> index 49
    assert exact_quantile(values, 0.95) == 95.0  # rank 94.05 -> index 94
    assert exact_quantile(values, 0.99) == 99.0
    assert exact_quantile([0.0, 0.0, 7.0], 0.5) == 0.0


def test_scope_keys_escape_the_separators() -> None:
    assert scope_keys("a/b", "x@y", "1=2", "t%") == [
        ("GLOBAL", "global"),
        ("TENANT", "tenant=a%2Fb"),
        ("AGENT", "tenant=a%2Fb/agent=x%40y@1%3D2"),
        ("TOOL", "tenant=a%2Fb/tool=t%25"),
    ]


def _stored_from(truth_events: list[AgentEvent], cutoff_us: int = T0_US + 7_200_000_000) -> Stored:
    """A store holding exactly the truth, of the windows ending by ``cutoff_us`` (what
    ``read_stored`` selects)."""
    truth = compute_truth(truth_events, SETTINGS)
    return Stored(
        records={k: set(v) for k, v in truth.records.items()},
        transitions=set(truth.transitions),
        timeouts={run: [t] for run, t in truth.timeouts.items()},
        runs_completed=set(truth.runs_completed),
        runs_failed=set(truth.runs_failed),
        cells={
            key: StoredCell(
                cell.kind, dict(cell.figures), dict(cell.state_ms), dict(cell.quantiles())
            )
            for key, cell in truth.cells.items()
            if key[1] + RESOLUTIONS[key[0]] <= cutoff_us
        },
    )


def test_the_table_shows_no_difference_when_the_store_matches() -> None:
    events = complete_run()
    truth = compute_truth(events, SETTINGS)
    stored = _stored_from(events)
    rows = compare(truth, stored, cutoff_us=T0_US + 7_200_000_000, accuracy=0.01)
    assert differences(rows) == []
    by_name = {row.figure: row for row in rows}
    assert by_name["transitions accepted"].truth == 5
    assert by_name["rollups 1m global: count"].stored == 1


def test_the_table_shows_each_kind_of_difference() -> None:
    events = complete_run()
    truth = compute_truth(events, SETTINGS)
    stored = _stored_from(events)
    stored.records["tool_calls"].add("extra")
    stored.timeouts["run-ok"] = [Timeout("REVIEWING", 1)]
    cell = stored.cells[("1s", T0_US, "global")]
    cell.figures["count"] = 3  # a duplicate counted
    cell.figures["late_events"] = 1
    cell.quantiles["latency_p95"] = 120.0 * 1.02  # 2% off, beyond the 1% accuracy
    stored.cells[("1m", T0_US + 60_000_000, "global")] = StoredCell("GLOBAL", {"late_events": 1})

    rows = {
        r.figure: (r.truth, r.stored)
        for r in differences(compare(truth, stored, cutoff_us=T0_US + 7_200_000_000, accuracy=0.01))
    }
    assert rows == {
        "tool_calls rows": (1, 2),
        "event rows: ids missing or unexpected": (0, 1),
        "timeouts synthesized": (0, 1),
        "timeouts from REVIEWING": (0, 1),
        "timeouts: wrong run, state or deadline": (0, 1),
        "rollups 1m global: late_events": (0, 1),
        "rollups 1s global cells wrong": (0, 1),
        "rollups 1s global p50/p95/p99 off by >1%": (0, 1),
        "rollups 1m global cells": (1, 2),
        "rollups 1m global cells wrong": (0, 1),
    }


def test_the_differing_cells_are_written_figure_by_figure(tmp_path: Path) -> None:
    events = complete_run()
    truth = compute_truth(events, SETTINGS)
    stored = _stored_from(events)
    stored.cells[("1s", T0_US, "global")].figures["count"] = 3
    stored.cells[("1s", T0_US, "global")].quantiles["latency_p50"] = 130.0
    del stored.cells[("1h", T0_US, "tenant=acme")]
    found = cell_differences(truth, stored, cutoff_us=T0_US + 7_200_000_000, accuracy=0.01)
    lines = (tmp_path / "cells.tsv", write_cell_differences(tmp_path / "cells.tsv", found))
    text = lines[0].read_text().splitlines()
    assert lines[1] == len(text) - 1 == len(found)
    assert "1s\t2026-01-01T12:00:00+00:00\tglobal\tcount\t1\t3" in text
    assert "1s\t2026-01-01T12:00:00+00:00\tglobal\tlatency_p50\t120\t130" in text
    missing = {d.figure for d in found if d.resolution == "1h" and d.scope == "tenant=acme"}
    assert {"count", "latency_p50", "runs_completed"} <= missing
    assert all(d.stored in (0, None) for d in found if d.scope == "tenant=acme")


def test_windows_past_the_cutoff_are_left_out() -> None:
    events = complete_run()
    truth = compute_truth(events, SETTINGS)
    rows = compare(truth, Stored(), cutoff_us=T0_US, accuracy=0.01)
    assert [r.figure for r in differences(rows)] == [
        "tool_calls rows",
        "model_calls rows",
        "review_decisions rows",
        "event rows: ids missing or unexpected",
        "transitions accepted",
        "transitions: ids missing or unexpected",
        "runs completed",
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafkas_test_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_the_population_is_seeded_and_unambiguous() -> None:
    start = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    config = PopulationConfig(start=start, live_s=30, seed=3)
    one, two = generate(config), generate(config)
    assert [p.event for p in one.events] == [p.event for p in two.events]
    closing = one.phase("closing")
    assert {partition_of(p.event.run_id, 6) for p in closing} == set(range(6))
    assert one.cutoff < one.closing_at
    assert all(
        p.event.event_time < one.cutoff
        for p in one.events
        if p.phase != "closing" and p.kind != "clock"
    )
    backlog = one.phase("backlog")
    assert backlog
    assert max(p.event.event_time for p in backlog) <= datetime(2026, 1, 1, 12, tzinfo=UTC)
    by_run: dict[str, list[AgentEvent]] = {}
    for p in one.events:
        by_run.setdefault(p.event.run_id, []).append(p.event)
    for p in one.events:
        if p.kind == "stall:EXECUTING":
            assert not any(isinstance(e, ToolCall) for e in by_run[p.event.run_id])
    for events in by_run.values():
        gaps = [
            (b.event_time - a.event_time).total_seconds() for a, b in itertools.pairwise(events)
        ]
        assert all(0 < gap < 1 for gap in gaps)
    assert sum(p.copies > 1 for p in one.events) > 0
    assert sum(p.kind == "clock" for p in one.events) == config.absurd_events


TRUTH_MODULES = ("population.py", "truth.py", "compare.py", "arrivals.py")


@pytest.mark.parametrize("module", TRUTH_MODULES)
def test_the_truth_does_not_import_the_engine_or_the_sink(module: str) -> None:
    path = Path(soak_package.__file__).parent / module
    imported: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
            imported += [f"{node.module}.{alias.name}" for alias in node.names]
    assert imported
    offenders = [
        name
        for name in imported
        if name.startswith(("agentstream.processors", "agentstream.sinks"))
        or name.split(".")[0] in {"processors", "sinks"}
        or (
            name.startswith("agentstream.devtools.soak.")
            and name.split(".")[3] not in {m[:-3] for m in TRUTH_MODULES}
        )
    ]
    assert offenders == []
