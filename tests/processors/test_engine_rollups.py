"""Rollups through the real broker, against ground truth computed here; and a SIGKILL mid-stream."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstream.core.config import Settings, settings_env
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.schemas import (
    AgentEvent,
    AgentState,
    CallStatus,
    ErrorClass,
    Rollup,
    StateTransition,
    ToolCall,
    encode_model,
)
from tests.support.engine import engine_settings, produce, read_committed, run_engine

pytestmark = pytest.mark.integration

_CTX = {"tenant_id": "acme", "user_id": "u1", "agent_id": "planner", "agent_version": "1.0"}


def _lower_quantile(values: list[float], q: float) -> float:
    """ddsketch's definition, computed exactly: the value at rank floor(q * (n - 1))."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def _traffic(seed: int, seconds: int, per_second: int) -> list[ToolCall]:
    rng = random.Random(seed)
    base = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    calls = []
    for second in range(seconds):
        for i in range(per_second):
            roll = rng.random()
            status, error = CallStatus.SUCCESS, ErrorClass.NONE
            if roll < 0.05:
                status, error = CallStatus.ERROR, ErrorClass.RETRYABLE
            elif roll < 0.08:
                status, error = CallStatus.ERROR, ErrorClass.TIMEOUT
            calls.append(
                ToolCall(
                    **_CTX,
                    run_id=f"run-{second}-{i % 5}",
                    event_time=base + timedelta(seconds=second, microseconds=i * 1000),
                    tool=rng.choice(("search", "sql")),
                    status=status,
                    error_class=error,
                    latency_ms=round(rng.lognormvariate(5.5, 1.0), 3),
                )
            )
    return calls


def test_rollups_match_ground_truth(kafka_broker: BrokerHandle) -> None:
    # one input partition keeps the expected window set easy to state
    settings = engine_settings(kafka_broker, partitions=1, rollups={"allowed_lateness_s": 1})
    calls = _traffic(seed=5, seconds=130, per_second=20)
    produce(settings, [("tool_calls", c.run_id, encode_model(c)) for c in calls])
    run_engine(settings, lambda e: e.stats.consumed == len(calls))
    rollups = [r for r in read_committed(settings, "rollups") if isinstance(r, Rollup)]

    # ground truth per (resolution, window start, scope)
    truth: dict[tuple[str, datetime, str], list[ToolCall]] = defaultdict(list)
    for call in calls:
        for resolution, length in (("1s", 1), ("1m", 60)):
            start = call.event_time.replace(microsecond=0)
            start -= timedelta(seconds=start.second % length)
            for scope in ("global", f"tenant=acme/tool={call.tool}"):
                truth[(resolution, start, scope)].append(call)
    watermark = max(c.event_time for c in calls) - timedelta(seconds=1)

    emitted: dict[tuple[str, datetime, str], Rollup] = {
        (r.resolution, r.window_start, r.scope_key): r for r in rollups
    }
    assert len(emitted) == len(rollups), "a window was emitted twice"
    expected_keys = {
        key
        for key in truth
        if key[0] in ("1s", "1m")
        and key[1] + timedelta(seconds=1 if key[0] == "1s" else 60) <= watermark
    }
    checked = {key for key in emitted if key[0] in ("1s", "1m") and key[2] in {k[2] for k in truth}}
    assert checked == expected_keys
    # 12:00 and 12:01 closed, each for global and the two tools
    assert sum(1 for k in expected_keys if k[0] == "1m") == 6
    accuracy = settings.rollups.sketch_relative_accuracy
    for key in expected_keys:
        rollup, group = emitted[key], truth[key]
        assert rollup.count == len(group), key
        assert rollup.error == sum(c.status is CallStatus.ERROR for c in group), key
        assert rollup.retryable == sum(c.error_class is ErrorClass.RETRYABLE for c in group)
        assert rollup.timeout == sum(c.error_class is ErrorClass.TIMEOUT for c in group)
        assert rollup.success == sum(c.status is CallStatus.SUCCESS for c in group)
        latencies = [c.latency_ms for c in group]
        for q, got in ((0.95, rollup.latency_p95), (0.99, rollup.latency_p99)):
            exact = _lower_quantile(latencies, q)
            assert got is not None
            assert abs(got - exact) <= accuracy * exact + 1e-9, (key, q, got, exact)


def _population(seed: int, runs: int) -> list[AgentEvent]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(minutes=5)
    events: list[AgentEvent] = []
    path = [AgentState.INIT, AgentState.PREPARING, AgentState.EXECUTING, AgentState.REVIEWING]
    for n in range(runs):
        at = start + timedelta(milliseconds=n * 30)
        run = f"run-{n}"
        previous: AgentState | None = None
        for state in path:
            at += timedelta(milliseconds=5)
            events.append(
                StateTransition(
                    **_CTX, run_id=run, event_time=at, from_state=previous, to_state=state
                )
            )
            previous = state
            if state is AgentState.EXECUTING:
                at += timedelta(milliseconds=3)
                events.append(
                    ToolCall(
                        **_CTX,
                        run_id=run,
                        event_time=at,
                        tool="search",
                        status=CallStatus.SUCCESS,
                        latency_ms=rng.uniform(1, 500),
                    )
                )
        end = AgentState.COMPLETED if rng.random() < 0.9 else AgentState.PREPARING  # invalid
        events.append(
            StateTransition(
                **_CTX,
                run_id=run,
                event_time=at + timedelta(milliseconds=5),
                from_state=AgentState.REVIEWING,
                to_state=end,
            )
        )
    # a last, complete run well past every budget, on both input topics: the low watermark
    # (not the wall clock) times out the stalled runs at the end, so both runs end alike
    at += timedelta(seconds=30)
    previous = None
    for state in [*path, AgentState.COMPLETED]:
        at += timedelta(milliseconds=5)
        events.append(
            StateTransition(
                **_CTX, run_id="clock", event_time=at, from_state=previous, to_state=state
            )
        )
        previous = state
        if state is AgentState.EXECUTING:
            events.append(
                ToolCall(
                    **_CTX,
                    run_id="clock",
                    event_time=at,
                    tool="search",
                    status=CallStatus.SUCCESS,
                    latency_ms=1.0,
                )
            )
    return events


def _records(events: list[AgentEvent]) -> list[tuple[str, str, bytes]]:
    return [
        ("tool_calls" if isinstance(e, ToolCall) else "transitions", e.run_id, encode_model(e))
        for e in events
    ]


def _outputs(settings: Settings) -> tuple[set[tuple[str, str, str]], dict[tuple[Any, ...], Any]]:
    lifecycle = {
        (r.run_id, r.event_id, r.to_state.value)
        for r in read_committed(settings, "lifecycle")
        if isinstance(r, StateTransition)
    }
    rollups = {
        (r.resolution, r.window_start, r.scope_key): r.model_dump(exclude={"computed_at"})
        for r in read_committed(settings, "rollups")
        if isinstance(r, Rollup)
    }
    return lifecycle, rollups


def test_sigkill_mid_stream_changes_nothing(kafka_broker: BrokerHandle, tmp_path: Any) -> None:
    # one partition: the input order, and so the watermark's path, is the same in both runs
    events = _population(seed=9, runs=5000)
    # past-dated traffic with the default idle switches: after the restart the rejoin and
    # first fetch are slow, and the wall clock must not take over while a backlog remains
    quiet: dict[str, Any] = {"partitions": 1, "rollups": {"allowed_lateness_s": 5}}
    reference = engine_settings(kafka_broker, **quiet)
    produce(reference, _records(events))
    run_engine(reference, lambda e: e.stats.consumed == len(events))
    expected_lifecycle, expected_rollups = _outputs(reference)
    assert len(expected_lifecycle) > 5000
    # the stalled runs (about a tenth) were failed by their REVIEWING budget
    assert sum(state == "FAILED" for *_, state in expected_lifecycle) > 300
    assert expected_rollups

    victim = engine_settings(kafka_broker, **quiet)
    produce(victim, _records(events))
    tag = victim.topics.prefix
    env = {
        **os.environ,
        **settings_env(
            {
                "kafka": {"bootstrap_servers": kafka_broker.bootstrap, "partitions": 1},
                "topics": {"prefix": tag},
                "worker": {"app_id": victim.worker.app_id, "web_port": 0},
                "lifecycle": {"reviewing_budget_s": 2, "timeout_grace_s": 0.5, "idle_after_s": 1},
                "rollups": {"idle_after_s": 3600, "allowed_lateness_s": 5},
                "clickhouse": {"path": tmp_path / "chdb"},
            }
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentstream", "worker", "--no-sink", "--no-alerts"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # kill it once it has committed part of the stream, not all of it
    deadline = time.monotonic() + 120
    while _lag(victim) > len(events) * 0.7 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(read_committed(victim, "lifecycle"))
    assert 0 < partial < len(expected_lifecycle), "the kill must land mid-stream"

    run_engine(victim, lambda e: e.stats.consumed > 0 and _lag(victim) == 0)
    lifecycle, rollups = _outputs(victim)
    assert lifecycle == expected_lifecycle
    diffs = {
        k: {f: (v[f], expected_rollups[k][f]) for f in v if v[f] != expected_rollups[k][f]}
        for k, v in rollups.items()
        if k in expected_rollups and v != expected_rollups[k]
    }
    print("DIFFS", len(diffs), list(diffs.items())[:8])
    print("KEYS", set(rollups) ^ set(expected_rollups))
    assert rollups == expected_rollups


def _lag(settings: Settings) -> int:
    """Input records of this test's topics not yet committed by the processors' group."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"{settings.worker.app_id}-processors",
            "enable.auto.commit": False,
        }
    )
    try:
        lag = 0
        for stream in ("transitions", "tool_calls"):
            topic = settings.topics.name(stream)
            parts = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
            for tp in consumer.committed(parts, timeout=10):
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()
