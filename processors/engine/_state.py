"""The processor's state, kept in a compacted changelog topic.

Keys are ``run:<run_id>`` (lifecycle), ``cell:<rollup cell key>`` (open rollup
windows), ``alert:<rule|scope>`` (alert rule states) and ``tracker`` (the
event clock). Values are JSON; a tombstone (``None``) deletes a key. Changes
are written in the same Kafka transaction as the outputs and the consumer
offsets, so after a crash the restored state, the outputs and the positions
agree exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from agentstream.core.errors import AgentstreamError

__all__ = ["ChangelogStore", "TrackedDict", "read_changelog"]


class TrackedDict(MutableMapping[str, Any]):
    """A dict that remembers which keys changed (``None`` marks a deletion)."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = data or {}
        self.changed: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self.changed[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.changed[key] = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def drain(self) -> dict[str, Any]:
        changed, self.changed = self.changed, {}
        return changed


class ChangelogStore:
    """Encodes state changes for the changelog topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    @staticmethod
    def encode(value: Any) -> bytes | None:
        return None if value is None else json.dumps(value, separators=(",", ":")).encode()


def read_changelog(
    consumer_config: dict[str, Any], topic: str, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Every live key of the changelog topic (committed records only), read to its end."""
    consumer = Consumer(
        {
            **consumer_config,
            "group.id": "agentstream-restore",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    state: dict[str, Any] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
        for partition in partitions:
            tp = TopicPartition(topic, partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            # ``high`` may point past a transaction marker: stop at the last stable offset
            position = low
            deadline = time.monotonic() + timeout_s
            while position < high and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    # past the last record there may only be transaction markers
                    position = consumer.position([tp])[0].offset
                    if position >= high or position < 0:
                        break
                    continue
                if message.error():
                    continue
                position = (message.offset() or 0) + 1
                key = (message.key() or b"").decode()
                value = message.value()
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = json.loads(value)
    except KafkaException as exc:
        raise AgentstreamError(f"cannot restore processor state from {topic}: {exc}") from exc
    finally:
        consumer.close()
    return state
