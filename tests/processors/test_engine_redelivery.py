"""A record the client delivers twice is processed once.

librdkafka restarts a partition's fetch at the committed offset when the partition is
revoked and assigned again; when both happen inside one ``consume`` call, the records
already taken from the old fetch can come back in the same batch. The engine then holds
the partition's state (nobody else had it in between): each offset counts once, against a
truth computed by the test, dead letters included (they have no event id to dedupe on)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.engine import ProcessorEngine
from agentstream.worker import ensure_changelog
from tests.support.engine import engine_settings, produce
from tests.support.faults import check, population, records

pytestmark = pytest.mark.integration


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
