"""Reading a whole topic back: every message up to the end offsets seen at the start."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

__all__ = ["consume_all"]

#: what a topic created a moment ago may answer until its leader is known everywhere
_NOT_YET = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)


def consume_all(
    bootstrap: str, topic: str, expected: int | None = None, *, timeout_s: float = 60.0
) -> list[tuple[bytes | None, bytes]]:
    """``(key, value)`` of every message in ``topic``, partition by partition in offset order.

    Reads up to the end offsets as they are when called (so call it after the
    producers flushed); ``expected``: assert the topic holds that many messages.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    out: list[tuple[bytes | None, bytes]] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p, 0) for p in sorted(metadata.topics[topic].partitions)]
        ends = {tp.partition: _end(consumer, tp, timeout_s) for tp in parts}
        if expected is not None:
            assert sum(ends.values()) == expected, f"{topic} holds {sum(ends.values())} messages"
        consumer.assign(parts)
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up reading {topic} to its end offsets {ends}")
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                partition = message.partition()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                        done.add(partition)
                    continue
                out.append((message.key(), message.value() or b""))
    finally:
        consumer.close()
    return out


def _end(consumer: Consumer, tp: TopicPartition, timeout_s: float) -> int:
    """The high watermark; a topic created a moment ago may not have its leader known yet
    (NOT_LEADER_FOR_PARTITION and the like are retriable: asked again until the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=10)[1])
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
