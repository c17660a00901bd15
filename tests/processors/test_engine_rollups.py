"""Rollups through the real broker, against ground truth computed here."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.schemas import (
    CallStatus,
    ErrorClass,
    Rollup,
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


# The SIGKILL test that compared a killed-and-restarted run with an uninterrupted run of the
# engine (an error both share stayed invisible) is now tests/processors/test_engine_faults.py::
# test_sigkill_again_and_again_gives_the_truth: killed three times, compared with the truth.
