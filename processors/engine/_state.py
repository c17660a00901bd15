"""The processor's state, kept in a compacted changelog topic, in named stores.

Each store owns the keys ``<name>:<id>`` (:class:`Store`):

=========  =====================================  ===============================
store      id                                     value
=========  =====================================  ===============================
``run``    run_id                                 lifecycle :class:`RunState`
``cell``   rollup entry (``1s|<start>|<scope>``,  rollup cell, ids seen, meta
           ``ids|<start>``, ``meta``)
``alert``  ``<rule>|<scope>``                     alert rule state
``clock``  ``partitions``                         the event clocks (``_watermarks``)
=========  =====================================  ===============================

Values are JSON; a tombstone (``None``) deletes a key. Changes are written in the same
Kafka transaction as the outputs and the consumer offsets, so after a crash the restored
state, the outputs and the positions agree exactly. Today's release's singleton
``tracker`` key is read once (:data:`LEGACY_TRACKER`) and deleted by the first commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, MutableMapping
from typing import Any, Final

from confluent_kafka import KafkaException, TopicPartition

from agentstream.core import kafka
from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError

__all__ = [
    "ALERTS",
    "CELLS",
    "CLOCKS",
    "LEGACY_TRACKER",
    "RUNS",
    "Store",
    "TrackedDict",
    "encode",
    "read_changelog",
]

#: the changelog key of today's release's event clock (migrated, then deleted)
LEGACY_TRACKER: Final = "tracker"


class Store:
    """A named key space of the changelog: ids ``x`` live under the key ``<name>:x``."""

    __slots__ = ("name", "prefix")

    def __init__(self, name: str) -> None:
        if ":" in name:
            raise ValueError(f"a store name has no ':' ({name!r})")
        self.name = name
        self.prefix = f"{name}:"

    def key(self, id_: str) -> bytes:
        """The changelog key of ``id_``."""
        return f"{self.prefix}{id_}".encode()

    def items(self, state: dict[str, Any]) -> dict[str, Any]:
        """This store's ``id -> value`` in a restored changelog."""
        prefix, cut = self.prefix, len(self.prefix)
        return {k[cut:]: v for k, v in state.items() if k.startswith(prefix)}

    def __repr__(self) -> str:
        return f"Store({self.name!r})"


RUNS: Final = Store("run")
CELLS: Final = Store("cell")
ALERTS: Final = Store("alert")
CLOCKS: Final = Store("clock")


class TrackedDict(MutableMapping[str, Any]):
    """A dict that remembers which keys changed (``None`` marks a deletion)."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = data or {}
        self.changed: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    # the mixin's get/__contains__ go through __getitem__ and a KeyError: the per-record path
    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

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


def encode(value: Any) -> bytes | None:
    """A changelog value (None: a tombstone)."""
    return None if value is None else _JSON.encode(value).encode()


#: ``json.dumps`` with options builds an encoder per call; the changelog writes one per change
_JSON: Final = json.JSONEncoder(separators=(",", ":"))


def read_changelog(settings: Settings, topic: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Every live key of the changelog topic (committed records only), read to its end.

    Raises :class:`AgentstreamError` naming the topic and how far the read got when it
    cannot reach the end of every partition within ``timeout_s``: a worker never runs
    on part of its state.
    """
    consumer = kafka.consumer(settings, "restore", {"group.id": f"{topic}-restore"})
    state: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    io_timeout = max(timeout_s, 10.0)  # one metadata or offsets request
    try:
        metadata = consumer.list_topics(topic, timeout=io_timeout)
        partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
        for partition in sorted(partitions):
            tp = TopicPartition(topic, partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=io_timeout)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            # ``high`` may point past a transaction marker: stop at the last stable offset
            position, read = low, 0
            while position < high:
                if time.monotonic() > deadline:
                    raise AgentstreamError(
                        f"cannot restore processor state from {topic}: partition {partition} "
                        f"read to offset {position} of {high} ({read} records, {len(state)} "
                        f"keys) in {timeout_s:g} s; the worker stops rather than run on part "
                        "of its state"
                    )
                message = consumer.poll(0.5)
                if message is None:
                    # past the last record there may only be transaction markers
                    at = consumer.position([tp])[0].offset
                    if at >= high:
                        break
                    position = max(position, at)
                    continue
                if message.error():
                    if message.error().fatal():
                        raise KafkaException(message.error())
                    continue
                position = (message.offset() or 0) + 1
                read += 1
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
