"""Pipeline instruments: what each records, read back through the OTel SDK."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from agentstream import EmitterStats
from agentstream.core.metrics import consumer_lag
from agentstream.testing import RecordedMetrics


@pytest.fixture
def recorded() -> Iterator[RecordedMetrics]:
    recorded = RecordedMetrics()
    yield recorded
    recorded.shutdown()


def test_counts_are_added_per_topic_with_the_stage(recorded: RecordedMetrics) -> None:
    metrics = recorded.metrics
    metrics.add_counts(metrics.consumed, "sink", {"a": 3, "b": 0, "c": 2})
    metrics.add_counts(metrics.consumed, "sink", {"a": 1})
    values = recorded.values("agentstream.events.consumed")
    assert values == {
        (("stage", "sink"), ("topic", "a")): 4,
        (("stage", "sink"), ("topic", "c")): 2,
    }
    assert recorded.total("agentstream.events.consumed", stage="sink") == 6


def test_lag_is_reported_per_group_until_forgotten(recorded: RecordedMetrics) -> None:
    metrics = recorded.metrics
    metrics.record_lag("g1", {("t", 0): 5, ("t", 1): None})
    metrics.record_lag("g2", {("t", 0): 0})
    values = recorded.values("agentstream.consumer.lag")
    assert values == {
        (("consumer_group", "g1"), ("partition", 0), ("topic", "t")): 5,
        (("consumer_group", "g2"), ("partition", 0), ("topic", "t")): 0,
    }
    metrics.record_lag("g1", {("t", 0): 1})
    metrics.forget_group("g2")
    assert recorded.values("agentstream.consumer.lag") == {
        (("consumer_group", "g1"), ("partition", 0), ("topic", "t")): 1
    }
    assert metrics.lag("g1") == {("t", 0): 1}


@dataclass(eq=False)
class _FakeEmitter:
    delivered: dict[str, int]
    spooled: int

    def delivered_by_topic(self) -> dict[str, int]:
        return dict(self.delivered)

    def stats(self) -> EmitterStats:
        return EmitterStats(
            emitted=sum(self.delivered.values()) + self.spooled + 4,
            delivered=sum(self.delivered.values()),
            failed=0,
            spooled=self.spooled,
            replayed=0,
            rejected=0,
            lost=0,
            queued=4,
            diverting=False,
        )


def test_emitters_are_read_when_the_meter_collects(recorded: RecordedMetrics) -> None:
    one = _FakeEmitter({"agent.tool_calls": 7}, spooled=2)
    two = _FakeEmitter({"agent.tool_calls": 1, "agent.transitions": 3}, spooled=0)
    recorded.metrics.watch(one)
    recorded.metrics.watch(two)
    events = recorded.values("agentstream.emitter.events")
    assert events[(("outcome", "delivered"), ("topic", "agent.tool_calls"))] == 8
    assert events[(("outcome", "delivered"), ("topic", "agent.transitions"))] == 3
    assert events[(("outcome", "spooled"),)] == 2
    assert events[(("outcome", "lost"),)] == 0
    assert recorded.total("agentstream.emitter.queued") == 8
    del two  # a garbage-collected emitter stops being reported
    import gc

    gc.collect()
    assert recorded.total("agentstream.emitter.queued") == 4


def test_sink_batches_are_a_histogram_in_seconds(recorded: RecordedMetrics) -> None:
    for seconds in (0.002, 0.004, 0.3):
        recorded.metrics.sink_batch.record(seconds, {"table": "tool_calls", "outcome": "ok"})
    [point] = recorded._points("agentstream.sink.batch.duration")
    assert point.count == 3
    assert point.sum == pytest.approx(0.306)
    assert point.bucket_counts[list(point.explicit_bounds).index(0.0025)] == 1


class _Consumer:
    """confluent-kafka's consumer surface ``consumer_lag`` reads (a pure-logic double)."""

    def __init__(
        self, parts: dict[int, tuple[int, int, int]], committed: dict[int, int] | None = None
    ) -> None:
        self.parts = parts  # partition → (position, low, high)
        self.commits = committed or {}  # partition → the group's committed offset
        self.asked: list[int] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", p) for p in self.parts]

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition("t", tp.partition, self.parts[tp.partition][0]) for tp in tps]

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked += [tp.partition for tp in tps]
        return [
            TopicPartition("t", tp.partition, self.commits.get(tp.partition, -1001)) for tp in tps
        ]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        assert cached  # never a broker round trip for the ends
        _, low, high = self.parts[tp.partition]
        return low, high


def test_consumer_lag_per_partition() -> None:
    consumer: Any = _Consumer(
        {
            0: (10, 0, 25),  # 15 behind
            1: (-1001, 5, 9),  # no position yet, committed at 7: 2 ahead
            2: (-1001, -1001, -1001),  # nothing fetched: unknown
            3: (7, 7, 7),  # empty
            4: (40, 0, 30),  # the cached end lags the position: not negative
            5: (-1001, 5, 9),  # no position, nothing committed: from the low watermark
            6: (-1001, 20, 30),  # committed below what retention kept: from the low watermark
            7: (-1001, 0, 30),  # committed at the end (a predecessor read it all): 0
        },
        {1: 7, 6: 3, 7: 30},
    )
    assert consumer_lag(consumer) == {
        ("t", 0): 15,
        ("t", 1): 2,
        ("t", 2): None,
        ("t", 3): 0,
        ("t", 4): 0,
        ("t", 5): 4,
        ("t", 6): 10,
        ("t", 7): 0,
    }
    assert sorted(consumer.asked) == [1, 2, 5, 6, 7]  # only where there is no position


def test_consumer_lag_asks_the_committed_offsets_once_with_a_cache() -> None:
    consumer: Any = _Consumer({0: (-1001, 0, 30), 1: (12, 0, 30)}, {0: 30})
    cache: dict[tuple[str, int], int] = {}
    for _ in range(3):
        assert consumer_lag(consumer, cache) == {("t", 0): 0, ("t", 1): 18}
    assert consumer.asked == [0]
    assert cache == {("t", 0): 30}
    assert consumer_lag(_Consumer({})) == {}
