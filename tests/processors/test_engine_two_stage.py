"""Two-stage rollups against the real broker: two engines in one group on 4 partitions,
one of them stopped mid-stream (a static member: its partitions move to the other after
its session; the SIGKILL of a worker process is ``test_engine_partitions``), give
the rollups of the truth computed from the population in plain Python (global scope at
1 s and 1 min by :mod:`tests.support.faults`, per-tool minutes here); the partials topic
is created with the inputs' partition count and a worker holds the same partitions of it."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstream.core.config import Settings
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.engine import ProcessorEngine, partials_topic
from agentstream.processors.engine._assignment import partition_counts
from agentstream.schemas import Rollup, ToolCall
from agentstream.worker import ensure_changelog
from tests.support.engine import committed_lag, engine_settings, produce, read_committed
from tests.support.faults import check, finished, population, records

pytestmark = pytest.mark.integration

_SETTINGS: dict[str, Any] = {
    "rollups": {"idle_after_s": 1, "allowed_lateness_s": 5},
    # a stopped engine's partitions move after its session
    "kafka": {"overrides": {"processors": {"session.timeout.ms": 6000}}},
}


def _engine(settings: Settings, instance: str) -> ProcessorEngine:
    worker = settings.worker.model_copy(update={"instance_id": instance})
    engine = ProcessorEngine(settings.model_copy(update={"worker": worker}), batch_size=200)
    engine.open(lambda topic, n: ensure_changelog(settings, topic, n))
    return engine


def _tool_minutes(events: list[Any]) -> Counter[tuple[datetime, str]]:
    """Tool calls per (minute, tool scope), in plain Python."""
    out: Counter[tuple[datetime, str]] = Counter()
    for e in events:
        if isinstance(e, ToolCall):
            minute = e.event_time.replace(second=0, microsecond=0)
            out[(minute, f"tenant={e.tenant_id}/tool={e.tool}")] += 1
    return out


def _stored_tool_minutes(settings: Settings) -> Counter[tuple[datetime, str]]:
    latest: dict[tuple[datetime, str], Rollup] = {}
    for r in read_committed(settings, "rollups"):
        if isinstance(r, Rollup) and r.resolution == "1m" and "/tool=" in r.scope_key:
            key = (r.window_start, r.scope_key)
            if key not in latest or r.computed_at >= latest[key].computed_at:
                latest[key] = r
    return Counter({k: r.count for k, r in latest.items() if r.count})


def _poll(
    engines: list[ProcessorEngine], until: Any, what: str, timeout_s: float, every_s: float = 0
) -> None:
    """Poll the engines (for ``every_s`` at least between two looks) until ``until()``."""
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {[e.health() for e in engines]}")
        look = time.monotonic() + every_s
        while True:
            for engine in engines:
                engine.poll(0.1)
            if time.monotonic() >= look:
                break


def test_two_engines_one_stopped_give_the_rollups_of_the_truth(
    kafka_broker: BrokerHandle,
) -> None:
    settings = engine_settings(kafka_broker, partitions=4, **_SETTINGS)
    start = datetime.now(UTC) - timedelta(minutes=4)
    events, truth = population(seed=31, runs=1500, start=start, spacing_ms=100)
    produce(settings, records(events))
    total = len(events)
    a, b = _engine(settings, "a"), _engine(settings, "b")
    engines = [a, b]
    try:
        topic = partials_topic(settings)
        assert partition_counts(settings, [topic]) == {topic: 4}
        _poll(
            [a, b],
            lambda: len(a.health()["assigned"]) == 2 == len(b.health()["assigned"]),
            "two engines sharing the partitions",
            90,
        )
        # the range assignor gives each engine the same partitions of the partials topic
        for engine in (a, b):
            held = {(tp.topic, tp.partition) for tp in engine._consumer.assignment()}
            indexes = set(engine.health()["assigned"])
            assert {p for t, p in held if t == topic} == indexes
        _poll([a, b], lambda: committed_lag(settings) <= total * 0.6, "40 % processed", 120)
        assert committed_lag(settings) > 0, "the stop must land mid-stream"
        # a stops between two batches: after its session b gets everything
        a.close()
        engines = [b]
        _poll([b], lambda: len(b.health()["assigned"]) == 4, "b taking a's partitions", 90)
        _poll(
            [b],
            lambda: committed_lag(settings) == 0 and finished(settings, truth),
            "every run's verdict",
            240,
            every_s=2,
        )
        # the windows close on the wall clock once everything is quiet (idle_after_s 1)
        want = _tool_minutes(events)
        _poll(
            [b],
            lambda: b.settled and _stored_tool_minutes(settings) == want,
            "the rollups",
            90,
            every_s=2,
        )
    finally:
        for engine in engines:
            engine.close()
    check(settings, truth)
    assert sum(want.values()) == sum(isinstance(e, ToolCall) for e in events)
