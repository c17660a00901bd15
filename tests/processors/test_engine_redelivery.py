"""A record the client delivers twice is processed once.

librdkafka restarts a partition's fetch at the committed offset when the partition is
revoked and assigned again; when both happen inside one ``consume`` call, the records
already taken from the old fetch can come back in the same batch, and records below an
offset another worker has committed meanwhile too. Each offset counts once: the filter
on its own, then the engine on the real broker against a truth computed by the test, dead
letters included (they have no event id to dedupe on)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.engine import ProcessorEngine
from agentstream.processors.engine._rebalance import Rebalancing, fresh_records
from agentstream.worker import ensure_changelog
from tests.support.engine import engine_settings, produce
from tests.support.faults import check, population, records


class _Message:
    """What the filter reads of a ``confluent_kafka.Message``."""

    def __init__(self, topic: str, partition: int, offset: int, error: object = None) -> None:
        self._where, self._error = (topic, partition, offset), error

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def error(self) -> object:
        return self._error


def _where(messages: list[Any]) -> list[tuple[str, int, int]]:
    return [(m.topic(), m.partition(), m.offset()) for m in messages if not m.error()]


def test_records_below_the_next_offset_are_skipped_once_each() -> None:
    next_offsets = {("t", 0): 5}
    error = _Message("t", 0, -1, error="broker down")
    batch = [
        _Message("t", 0, 3),  # below the committed offset: processed by someone already
        _Message("t", 0, 5),
        _Message("t", 0, 6),
        _Message("t", 1, 0),
        error,
        _Message("t", 0, 5),  # the restarted fetch, in the same batch
        _Message("t", 0, 6),
        _Message("t", 0, 7),
        _Message("t", 1, 0),
    ]
    kept, skipped = fresh_records(batch, next_offsets)
    assert _where(kept) == [("t", 0, 5), ("t", 0, 6), ("t", 1, 0), ("t", 0, 7)]
    assert error in kept
    assert skipped == {("t", 0): 3, ("t", 1): 1}
    assert next_offsets == {("t", 0): 8, ("t", 1): 1}


class _Committed:
    def __init__(self, offsets: dict[tuple[str, int], int]) -> None:
        self.offsets = offsets

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[Any]:
        return [
            TopicPartition(tp.topic, tp.partition, self.offsets[(tp.topic, tp.partition)])
            for tp in partitions
        ]


def test_an_assignment_starts_every_partition_at_its_committed_offset() -> None:
    # partition 1 was lost, another worker committed up to 12, and it came back
    engine = Rebalancing.__new__(Rebalancing)
    engine._started, engine._next = {}, {("t", 0): 9, ("t", 1): 4, ("t", 2): 7}
    client = _Committed({("t", 0): 9, ("t", 1): 12, ("t", 3): -1001})
    engine._from_committed(client, [TopicPartition("t", p) for p in (0, 1, 3)])
    assert engine._next == {("t", 0): 9, ("t", 1): 12}  # nothing committed on 3 yet
    assert engine._started == {("t", 0): 9, ("t", 1): 12, ("t", 3): -1001}
    kept, skipped = fresh_records([_Message("t", 1, 10), _Message("t", 1, 12)], engine._next)
    assert _where(kept) == [("t", 1, 12)]
    assert skipped == {("t", 1): 1}


class _Redelivering:
    """The engine's consumer, with every batch's records delivered a second time at the end
    of the batch (as after a revocation and reassignment inside the call)."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self.repeated = 0

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        batch = self._consumer.consume(num_messages, timeout)
        again = [m for m in batch if not m.error()]
        self.repeated += len(again)
        return [*batch, *again]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


@pytest.mark.integration
def test_a_batch_delivered_twice_counts_once(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker, rollups={"idle_after_s": 1, "allowed_lateness_s": 5})
    events, truth = population(
        seed=31, runs=200, start=datetime.now(UTC) - timedelta(minutes=2), spacing_ms=100
    )
    # two records that only a dead letter answers
    garbage = [("transitions", "bad-1", b"\xc3\x01not avro"), ("tool_calls", "bad-2", b"\x00")]
    recs = garbage + records(events)
    produce(settings, recs)

    engine = ProcessorEngine(settings, batch_size=150)
    engine.open(lambda topic, n: ensure_changelog(settings, topic, n))
    client = _Redelivering(engine._consumer)
    engine._consumer = client
    deadline = time.monotonic() + 120
    try:
        while not (
            engine.stats.consumed >= len(recs)
            and engine.health()["caught_up"]
            and engine.health()["open_runs"] == 0
            and engine.settled
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the engine did not get there: {engine.stats}")
            engine.poll(0.3)
        for _ in range(5):  # a timer sweep and the merge stage after the last record
            engine.poll(0.3)
    finally:
        engine.close()

    # against the truth first: each run's states, the rollups, one dead letter each
    dead = check(settings, truth, extra_dead=len(garbage))
    assert sorted(d.error_type for d in dead) == ["CodecError", "CodecError"]
    assert client.repeated >= len(recs)
    assert engine.stats.redelivered == client.repeated
    assert engine.stats.consumed == len(recs)
