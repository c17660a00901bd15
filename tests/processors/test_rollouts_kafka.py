"""Rollouts on the real broker and engine: agents emit runs, the engine makes rollups, the
rollouts stage judges them. A canary that holds is promoted through every stage; one whose
error rate rises is rolled back. Event time drives every stage (1 min stages, scripted
event times in the past): no sleeps.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

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


class _OnePartitionAtATime:
    """A consumer whose ``consume`` hands out one partition's records at a time, the
    highest-numbered partition first (what a slow fetch of the others gives): the
    rest wait for the next calls."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._held: list[Any] = []

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self._held += self._consumer.consume(num_messages, 0 if self._held else timeout)
        if not self._held:
            return []
        first = max(m.partition() for m in self._held)
        out = [m for m in self._held if m.partition() == first]
        self._held = [m for m in self._held if m.partition() != first]
        return out

    def position(self, partitions: list[Any]) -> list[Any]:
        """The consumer's positions, but before the first record still held back."""
        positions: list[Any] = self._consumer.position(partitions)
        for tp in positions:
            held = [m.offset() for m in self._held if m.partition() == tp.partition]
            if held:
                tp.offset = min(held)
        return positions

    def assign(self, partitions: list[Any]) -> None:
        self._held = []
        self._consumer.assign(partitions)

    def unassign(self) -> None:
        self._held = []
        self._consumer.unassign()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


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
    # the stage reads every rollup back at start: in any partition order, the same verdicts
    stage._rollups = _OnePartitionAtATime(stage._rollups)
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
