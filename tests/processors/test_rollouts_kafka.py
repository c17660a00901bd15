"""Rollouts on the real broker and engine: agents emit runs, the engine makes rollups, the
rollouts stage judges them. A canary that holds is promoted through every stage; one whose
error rate rises is rolled back. Event time drives every stage (1 min stages, scripted
event times in the past): no sleeps.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.rollouts import RolloutStage
from agentstream.schemas import (
    AgentState,
    Alert,
    Rollout,
    RolloutVerdict,
    StateTransition,
    ToolCall,
    encode_model,
)
from tests.support.engine import engine_settings, produce, read_committed, run_engine

pytestmark = pytest.mark.integration

S = AgentState
MINUTES = 6
RUNS_PER_MIN = 30
CALLS_PER_RUN = 10
STAGES = (5, 10, 25, 50, 100)


def error_rate(agent: str, version: str, minute: int) -> float:
    if agent == "billing" and version == "2.0" and minute >= 2:
        return 0.40  # the canary's error rate rises in its third minute
    return 0.01


def script(t0: datetime) -> list[tuple[str, str, bytes]]:
    rng = random.Random(16)
    records: list[tuple[str, str, bytes]] = []
    for minute in range(MINUTES):
        for agent in ("planner", "billing"):
            for version in ("1.0", "2.0"):
                for i in range(RUNS_PER_MIN):
                    run = f"{agent}-{version}-{minute}-{i}"
                    ctx = {
                        "tenant_id": "acme",
                        "user_id": "u",
                        "agent_id": agent,
                        "agent_version": version,
                        "run_id": run,
                    }
                    at = t0 + timedelta(minutes=minute, seconds=i * 1.9)
                    previous: AgentState | None = None
                    for k, state in enumerate((S.INIT, S.PREPARING, S.EXECUTING)):
                        ev = StateTransition(
                            **ctx, event_time=at + timedelta(milliseconds=k),
                            from_state=previous, to_state=state,
                        )  # fmt: skip
                        records.append(("transitions", run, encode_model(ev)))
                        previous = state
                    for c in range(CALLS_PER_RUN):
                        failed = rng.random() < error_rate(agent, version, minute)
                        call = ToolCall(
                            **ctx,
                            event_time=at + timedelta(milliseconds=10 + c),
                            tool="search",
                            status="ERROR" if failed else "SUCCESS",
                            error_class="RETRYABLE" if failed else "NONE",
                            latency_ms=rng.uniform(100, 200),
                        )
                        records.append(("tool_calls", run, encode_model(call)))
                    for k, state in enumerate((S.REVIEWING, S.COMPLETED)):
                        ev = StateTransition(
                            **ctx, event_time=at + timedelta(milliseconds=50 + k),
                            from_state=previous, to_state=state,
                        )  # fmt: skip
                        records.append(("transitions", run, encode_model(ev)))
                        previous = state
    return records


def rollout(agent: str, t0: datetime) -> Rollout:
    return Rollout(
        agent_id=agent,
        baseline="1.0",
        candidate="2.0",
        stages=STAGES,
        min_stage_s=60,
        guards=("error_rate <= +5pp", "p95_latency <= +50%"),
        min_runs=20,
        stage_started_at=t0,
        created_at=t0,
        updated_at=t0,
        created_by="test",
    )


def test_a_healthy_canary_is_promoted_and_a_failing_one_rolled_back(
    kafka_broker: BrokerHandle,
) -> None:
    now = datetime.now(UTC)
    t0 = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES + 5)
    settings = engine_settings(kafka_broker, rollouts={"channels": ["log"]})
    records = script(t0)
    definitions = [rollout(a, t0) for a in ("planner", "billing")]
    produce(settings, [("rollouts", r.agent_id, encode_model(r)) for r in definitions])
    produce(settings, records)
    run_engine(settings, lambda e: e.stats.consumed == len(records), timeout_s=240)

    stage = RolloutStage(settings)
    stage.open()
    deadline = time.monotonic() + 90
    try:
        while {r.status for r in stage.judge.rollouts.values()} != {"COMPLETED", "ROLLED_BACK"}:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no final verdicts: {stage.judge.rollouts}, {stage.verdicts}")
            stage.poll(0.3)
    finally:
        stage.close()

    verdicts = [
        v for v in read_committed(settings, "rollout_verdicts") if isinstance(v, RolloutVerdict)
    ]
    decided = {
        agent: [
            (v.verdict, v.stage_percent, v.next_percent)
            for v in verdicts
            if v.agent_id == agent and v.verdict != "HOLD"
        ]
        for agent in ("planner", "billing")
    }
    assert decided["planner"] == [
        ("PROMOTE", 5, 10),
        ("PROMOTE", 10, 25),
        ("PROMOTE", 25, 50),
        ("PROMOTE", 50, 100),
    ]
    assert decided["billing"] == [("PROMOTE", 5, 10), ("PROMOTE", 10, 25), ("ROLLBACK", 25, 0)]
    rollback = next(v for v in verdicts if v.verdict == "ROLLBACK")
    assert "error_rate <= +5pp: broken" in rollback.reason
    assert rollback.metrics["error_rate.diff_low"] > 0.05
    assert rollback.metrics["runs.candidate"] == RUNS_PER_MIN  # the stage's own minute
    assert rollback.decided_at == t0 + timedelta(minutes=3)  # event time, not the wall clock
    # every stage's figures are recorded: one minute of runs each side per stage
    for v in verdicts:
        if v.verdict == "PROMOTE":
            assert v.metrics["runs.candidate"] == v.metrics["runs.baseline"] == RUNS_PER_MIN
            assert v.metrics["calls.candidate"] == RUNS_PER_MIN * CALLS_PER_RUN
            assert v.metrics["elapsed_s"] == 60
    # the latest state of each rollout is on the compacted topic
    states = {r.agent_id: r for r in read_committed(settings, "rollouts") if isinstance(r, Rollout)}
    assert (states["planner"].status, states["planner"].percent) == ("COMPLETED", 100)
    assert states["billing"].status == "ROLLED_BACK"
    # PROMOTE and ROLLBACK reach the alert channels through the alerts topic
    alerts = [a for a in read_committed(settings, "alerts") if isinstance(a, Alert)]
    rollout_alerts = [a for a in alerts if a.rule_id.startswith("rollout:")]
    assert [a.severity.value for a in rollout_alerts if "ROLLBACK" in a.message] == ["CRITICAL"]
    assert sorted(a.rule_id for a in rollout_alerts) == sorted(
        f"rollout:{v.agent_id}" for v in verdicts if v.verdict != "HOLD"
    )

    # a restarted stage reads the finished states and judges nothing again
    again = RolloutStage(settings)
    again.open()
    try:
        deadline = time.monotonic() + 60
        while not again.leading:  # the group hands it the lease the first one left
            if time.monotonic() > deadline:
                raise TimeoutError("the restarted stage never got the lease")
            again.poll(0.3)
        for _ in range(5):
            again.poll(0.3)
    finally:
        again.close()
    assert set(again.judge.rollouts) == {"planner", "billing"}
    assert again.verdicts == []


def _caught_up(stage: RolloutStage) -> bool:
    """The stage leads and has read every rollup written so far."""
    consumer = stage._rollups
    assigned = consumer.assignment()
    if not stage.leading or not assigned:
        return False
    for tp in consumer.position(assigned):
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        if tp.offset < high and not (tp.offset < 0 and high == 0):
            return False
    return True


def _decided(verdicts: list[RolloutVerdict], agent: str) -> list[tuple[str, int, int | None]]:
    return [
        (v.verdict, v.stage_percent, v.next_percent)
        for v in verdicts
        if v.agent_id == agent and v.verdict != "HOLD"
    ]


def test_the_stage_moves_with_the_lease_and_judges_each_stage_once(
    kafka_broker: BrokerHandle,
) -> None:
    """Two workers run the stage; the leader judges the first minutes, then stops; the
    other takes the lease over, restores the rollouts' states and judges the rest. Every
    stage is decided once, as the script makes it (no verdict twice, none lost)."""
    now = datetime.now(UTC)
    t0 = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES + 5)
    settings = engine_settings(kafka_broker, rollouts={"channels": ["log"]})
    other = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"instance_id": "standby"})}
    )
    records = script(t0)
    first_minutes = [r for r in records if r[1].split("-")[2] in ("0", "1", "2")]
    produce(
        settings, [("rollouts", a, encode_model(rollout(a, t0))) for a in ("planner", "billing")]
    )
    produce(settings, first_minutes)
    run_engine(settings, lambda e: e.stats.consumed == len(first_minutes), timeout_s=240)

    stages = [RolloutStage(settings), RolloutStage(other)]
    for stage in stages:
        stage.open()
    try:
        deadline = time.monotonic() + 90
        while not any(_caught_up(stage) for stage in stages):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nobody judged the first minutes: {stages[0].verdicts}")
            for stage in stages:
                stage.poll(0.2)
        leader, standby = stages if stages[0].leading else stages[::-1]
        assert not standby.leading
        early = [v for v in leader.verdicts if v.verdict != "HOLD"]
        leader.close()
        stages.remove(leader)

        produce(settings, [r for r in records if r not in first_minutes])
        run_engine(settings, lambda e: e.stats.consumed == len(records) - len(first_minutes))
        deadline = time.monotonic() + 90
        while {r.status for r in standby.judge.rollouts.values()} != {"COMPLETED", "ROLLED_BACK"}:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no final verdicts: {standby.judge.rollouts}")
            standby.poll(0.3)
        late = [v for v in standby.verdicts if v.verdict != "HOLD"]
    finally:
        for stage in stages:
            stage.close()

    # the hand-over happened mid-way: each worker decided some stages
    assert early
    assert late
    verdicts = [
        v for v in read_committed(settings, "rollout_verdicts") if isinstance(v, RolloutVerdict)
    ]
    assert _decided(verdicts, "planner") == [
        ("PROMOTE", 5, 10),
        ("PROMOTE", 10, 25),
        ("PROMOTE", 25, 50),
        ("PROMOTE", 50, 100),
    ]
    assert _decided(verdicts, "billing") == [
        ("PROMOTE", 5, 10),
        ("PROMOTE", 10, 25),
        ("ROLLBACK", 25, 0),
    ]
