"""The order the input arrived in: each event's partition clock when it was first read.

``late_events`` of a rollup window counts its events read from their own input
partition after an event dated ``rollups.allowed_lateness_s`` or more past the
window's end (README, *Rollups*). That is a function of each input partition's
order, which is part of the input: the Emitter decides it (a spooled message
replayed after a broker outage lands behind newer ones), not the worker. So the
truth takes it from the input topics themselves, read here in offset order, and
applies the rule on its own (:func:`.truth.compute_truth`); nothing of the engine
is used.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError
from agentstream.schemas import decode_model

__all__ = ["Arrivals", "newest_before", "read_arrivals"]

#: event id -> the newest sane event time (µs) of its input partition read before its
#: first copy (its own time when nothing newer came first)
Arrivals = dict[str, int]

_SANE_FROM: Final = datetime(2000, 1, 1, tzinfo=UTC)
_SANE_UNTIL: Final = datetime(2100, 1, 1, tzinfo=UTC)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def newest_before(partitions: Iterable[Iterable[tuple[str, datetime]]]) -> Arrivals:
    """For each partition's ``(event_id, event_time)`` in offset order, the arrivals.

    Events dated outside [2000, 2100) are dead-lettered by the worker and move no
    clock: they are skipped.
    """
    out: Arrivals = {}
    for records in partitions:
        newest: int | None = None
        for event_id, at in records:
            if not _SANE_FROM <= at < _SANE_UNTIL:
                continue
            delta = at - _EPOCH
            t = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            before = t if newest is None else max(newest, t)
            out.setdefault(event_id, before)
            newest = before
    return out


def read_arrivals(settings: Settings, streams: Iterable[str], timeout_s: float = 120.0) -> Arrivals:
    """Read every partition of the agent input ``streams`` to its end, in offset order."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

    from agentstream.core import kafka

    topics = [settings.topics.name(stream) for stream in streams]
    consumer = kafka.consumer(
        settings, "tools", {"group.id": f"soak-arrivals-{uuid.uuid4().hex[:8]}"}
    )
    try:
        ends: dict[tuple[str, int], int] = {}
        assignment = []
        for topic in topics:
            for p in range(settings.kafka.partitions):
                tp = TopicPartition(topic, p)
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                if high > 0:
                    ends[(topic, p)] = high
                    assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        consumer.assign(assignment)
        records: dict[tuple[str, int], list[tuple[str, datetime]]] = {k: [] for k in ends}
        left = set(ends)
        deadline = datetime.now(UTC).timestamp() + timeout_s
        while left:
            if datetime.now(UTC).timestamp() > deadline:
                raise AgentstreamError(f"soak: input partitions not read to the end: {left}")
            for message in consumer.consume(1_000, 1.0):
                if message.error():
                    continue
                key = (message.topic(), message.partition())
                if message.offset() + 1 >= ends[key]:
                    left.discard(key)
                event: Any = _decode(message.value())
                if event is not None:
                    records[key].append((str(event.event_id), event.event_time))
    except KafkaException as exc:
        raise AgentstreamError(f"soak: cannot read the input topics: {exc}") from exc
    finally:
        consumer.close()
    return newest_before(records.values())


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return decode_model(value)
    except (AgentstreamError, ValueError):
        return None
