"""``core.metrics.consumer_lag`` against the real broker: a partition nothing was consumed
from since the assignment counts from the group's committed offset (or the low watermark),
not from the partition's beginning."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from agentstream.core.metrics import consumer_lag
from agentstream.devtools.localstack.testing import BrokerHandle, TopicFactory
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

PER_PARTITION = 10


def _consumer(bootstrap: str, group: str) -> Any:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def test_lag_counts_from_the_committed_offset_until_something_is_consumed(
    kafka_broker: BrokerHandle, kafka_topic: TopicFactory
) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = kafka_topic(partitions=3)
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in range(3):
        for i in range(PER_PARTITION):
            producer.produce(topic, f"v{i}".encode(), partition=partition)
    assert producer.flush(30) == 0
    group = f"lag-{uuid.uuid4().hex[:8]}"
    # a predecessor read partition 0 to its end and partition 1 up to offset 4;
    # partition 2: nothing committed
    committed = {0: PER_PARTITION, 1: 4}
    first = _consumer(bootstrap, group)
    first.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in committed.items()], asynchronous=False
    )
    first.close()

    consumer = _consumer(bootstrap, group)
    try:
        consumer.subscribe([topic])
        got: list[Any] = []

        def first_record() -> bool:
            got.extend(consumer.consume(1, 0.2))
            return bool(got)

        wait_until(first_record, "the first record after the assignment", timeout_s=60)
        [message] = got  # one record consumed: one partition has a position, two have none
        wait_until(
            lambda: all(
                consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1] >= 0
                for p in range(3)
            ),
            "the ends of every partition from the fetches",
            timeout_s=30,
        )
        lags = consumer_lag(consumer)
    finally:
        consumer.close()

    # the truth: from the committed offset (the low watermark, 0, where none), minus the
    # one record consumed from its partition
    start = {p: committed.get(p, 0) for p in range(3)}
    start[message.partition()] = message.offset() + 1
    assert lags == {(topic, p): PER_PARTITION - start[p] for p in range(3)}
    assert lags[(topic, 0)] == 0  # read to its end by the predecessor, whatever was consumed
