"""The processor's state, kept in a compacted changelog topic, in named stores.

Each store owns the keys ``<name>:<id>`` (:class:`Store`):

=========  =====================================  ===============================
store      id                                     value
=========  =====================================  ===============================
``run``    run_id                                 lifecycle :class:`RunState`
``cell``   rollup entry (``1s|<start>|<scope>``,  rollup cell, ids seen, meta
           ``ids|<start>|<seq>``, ``meta``)
``alert``  ``<rule>|<scope>``                     alert rule state
``clock``  ``<p>`` (per partition index), ``low`` the event clocks (``_watermarks``)
``merge``  the merge stage's partials, emitted    :class:`~processors.rollups.MergeStage`
           windows, source marks, ``meta``        entries
=========  =====================================  ===============================

**Layout.** The changelog has as many partitions as every input topic: a run's state
(and the event clock of partition index ``p``) lives on changelog partition ``p``, the
partition its input records come from, so a worker restores only the partitions it was
assigned (:mod:`processors.engine._assignment`). The rollup cells of partition index ``p``
(stage 1) live on ``p``; the merge stage and alert states of the scopes whose partials go
to partials partition ``q`` (stage 2, :mod:`processors.engine._stages`) live on ``q``. Only
the low watermark (``clock:low``) and an older release's leftovers live on partition 0
(:data:`GLOBAL_PARTITION`).

Values are JSON; a tombstone (``None``) deletes a key. Changes are written in the same
Kafka transaction as the outputs and the consumer offsets, so after a crash the restored
state, the outputs and the positions agree exactly. Older layouts (the singleton
``tracker`` key, :data:`LEGACY_TRACKER`; the single ``clock:partitions`` entry,
:data:`LEGACY_CLOCKS`) are read once and deleted by the first commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Iterator, MutableMapping
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from agentstream.core import kafka
from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError

__all__ = [
    "ALERTS",
    "CELLS",
    "CLOCKS",
    "GLOBAL_PARTITION",
    "LEGACY_CLOCKS",
    "LEGACY_TRACKER",
    "LOW_CLOCK",
    "MERGE",
    "RUNS",
    "Store",
    "TrackedDict",
    "encode",
    "read_changelog",
    "read_changelog_partitions",
]

#: the changelog key of an older release's event clock (migrated, then deleted)
LEGACY_TRACKER: Final = "tracker"
#: the id (in the ``clock`` store) of the single-partition layout's clocks entry
LEGACY_CLOCKS: Final = "partitions"
#: the id (``clock`` store) of the low watermark, on the global partition
LOW_CLOCK: Final = "low"
#: the changelog partition of the low watermark and of runs restored without a partition
GLOBAL_PARTITION: Final = 0


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
MERGE: Final = Store("merge")


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

    def absorb(self, data: dict[str, Any]) -> None:
        """Add restored entries (not changes: nothing to write back)."""
        self._data.update(data)

    def forget(self, keys: Iterable[str]) -> None:
        """Drop entries without deleting them (their partition went to another worker)."""
        for key in keys:
            self._data.pop(key, None)
            self.changed.pop(key, None)

    def drain(self) -> dict[str, Any]:
        changed, self.changed = self.changed, {}
        return changed


def encode(value: Any) -> bytes | None:
    """A changelog value (None: a tombstone)."""
    return None if value is None else _JSON.encode(value).encode()


#: ``json.dumps`` with options builds an encoder per call; the changelog writes one per change
_JSON: Final = json.JSONEncoder(separators=(",", ":"))


def read_changelog(
    settings: Settings,
    topic: str,
    timeout_s: float = 60.0,
    partitions: Collection[int] | None = None,
) -> dict[str, Any]:
    """Every live key of the changelog topic (:func:`read_changelog_partitions`), the
    partitions' keys in one dict (a key on two partitions: the higher partition's value)."""
    state: dict[str, Any] = {}
    for _, keys in sorted(
        read_changelog_partitions(settings, topic, timeout_s, partitions).items()
    ):
        state.update(keys)
    return state


def read_changelog_partitions(
    settings: Settings,
    topic: str,
    timeout_s: float = 60.0,
    partitions: Collection[int] | None = None,
) -> dict[int, dict[str, Any]]:
    """Every live key of the changelog topic (committed records only), read to its end;
    ``partitions``: only those (default: all).

    Raises :class:`AgentstreamError` naming the topic and how far the read got when it
    cannot reach the end of every partition within ``timeout_s``: a worker never runs
    on part of its state.
    """
    consumer = kafka.consumer(settings, "restore", {"group.id": f"{topic}-restore"})
    # the log's true end: a read_committed client's offsets query answers the last stable
    # offset, which leaves out a transaction the previous owner committed a moment ago
    # whose markers are not written yet (the read below waits for them instead)
    ends_of = kafka.consumer(
        settings,
        "restore",
        {"group.id": f"{topic}-restore", "isolation.level": "read_uncommitted"},
    )
    per: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    io_timeout = max(timeout_s, 10.0)  # one metadata or offsets request
    try:
        metadata = consumer.list_topics(topic, timeout=io_timeout)
        existing = metadata.topics[topic].partitions if topic in metadata.topics else {}
        wanted = existing if partitions is None else set(partitions) & set(existing)
        ends: dict[int, int] = {}
        at: dict[int, int] = {}
        for partition in sorted(wanted):
            tp = TopicPartition(topic, partition)
            low, high = _watermarks(ends_of, tp, io_timeout, deadline)
            if high > low:
                ends[partition], at[partition] = high, low
        # all at once: one assignment, each record applied to its own partition's keys (a
        # key moved by the migration has a tombstone on partition 0 and its value elsewhere)
        per.update({p: {} for p in ends})
        consumer.assign([TopicPartition(topic, p, o) for p, o in at.items()])
        read = 0
        while True:
            # ``high`` may point past a transaction marker: stop at the last stable offset
            left = [p for p in ends if at[p] < ends[p]]
            if not left:
                break
            if time.monotonic() > deadline:
                p = left[0]
                raise AgentstreamError(
                    f"cannot restore processor state from {topic}: partition {p} read to "
                    f"offset {at[p]} of {ends[p]} ({read} records, "
                    f"{sum(len(v) for v in per.values())} keys) in {timeout_s:g} s; the "
                    "worker stops rather than run on part of its state"
                )
            message = consumer.poll(0.5)
            if message is None:
                # past the last record there may only be transaction markers
                for tp in consumer.position([TopicPartition(topic, p) for p in left]):
                    at[tp.partition] = max(at[tp.partition], tp.offset)
                continue
            if message.error():
                if message.error().fatal():
                    raise KafkaException(message.error())
                continue
            p = message.partition()
            at[p] = max(at[p], (message.offset() or 0) + 1)
            read += 1
            key = (message.key() or b"").decode()
            value = message.value()
            if value is None:
                per[p].pop(key, None)
            else:
                per[p][key] = json.loads(value)
    except KafkaException as exc:
        raise AgentstreamError(f"cannot restore processor state from {topic}: {exc}") from exc
    finally:
        consumer.close()
        ends_of.close()
    return per


_NO_LEADER_YET: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def _watermarks(consumer: Any, tp: TopicPartition, timeout: float, deadline: float) -> Any:
    """A partition's low and high offsets; a just created topic's partition may not have
    its leader yet (a retriable error): asked again until ``deadline``."""
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if time.monotonic() > deadline or not (
                error.retriable() or error.code() in _NO_LEADER_YET
            ):
                raise
            time.sleep(0.1)
