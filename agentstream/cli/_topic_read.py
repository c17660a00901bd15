"""Read a topic from its beginning to its current end (the CLI's view of compacted state)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, TypeVar

from agentstream.core.errors import AgentstreamError

if TYPE_CHECKING:
    from agentstream.core.config import Settings
    from agentstream.schemas import Record

__all__ = ["read_topic"]

R = TypeVar("R", bound="Record")


def read_topic(settings: Settings, stream: str, model: type[R], timeout_s: float = 30.0) -> list[R]:
    """Every committed record of ``stream``'s topic, in partition order, decoded."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from agentstream.core import kafka
    from agentstream.core.codec import codec_from_settings

    topic = settings.topics.name(stream)
    codec = codec_from_settings(settings, role="consumer")
    consumer = kafka.consumer(
        settings,
        "tools",
        {"group.id": f"agentstream-cli-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False},
    )
    try:
        info = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise AgentstreamError(f"topic {topic} does not exist (agentstream topics create)")
        parts = sorted(info.partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout_s)[1] for p in parts
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[R] = []
        deadline = time.monotonic() + timeout_s
        # positions, not message offsets: a transaction's commit marker is never delivered
        while any(
            ends[tp.partition] > 0 and tp.offset < ends[tp.partition]
            for tp in consumer.position([TopicPartition(topic, p) for p in parts])
        ):
            if time.monotonic() > deadline:
                raise AgentstreamError(f"reading {topic}: not at its end after {timeout_s:g} s")
            for message in consumer.consume(500, 0.5):
                value = message.value()
                if not message.error() and value is not None:
                    out.append(codec.decode_model(value, model))
        return out
    finally:
        consumer.close()
