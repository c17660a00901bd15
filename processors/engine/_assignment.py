"""Partition-parallel processors: the changelog's layout, its check at start, its migration.

Every input topic is keyed by ``run_id`` (murmur2), so partition index ``p`` of every input
topic holds the same runs; the changelog has the same partition count and keeps a run's
state on partition ``p`` too. The consumer group's range assignor (eager protocol, set by
:mod:`agentstream.core.kafka`; the cooperative assignors do not co-partition) gives a
worker the same partitions of every input topic, so a worker owns whole partition indexes:
their input records, their run states, their event clocks, their stage-1 rollup cells
and the merge stage of partials partition ``p`` with its alert states
(:mod:`processors.engine._stages`). Partition 0 (:data:`GLOBAL_PARTITION`) also keeps the
low watermark and the runs of an older release that did not record their partition.

At start (:func:`prepare_changelog`, after ``init_transactions`` fenced an older
incarnation): the partition counts are checked (:class:`PartitionCountMismatch` names the
topics and counts); a missing changelog is created with the inputs' count; the
single-partition changelog of the release before is migrated (:func:`migrate_changelog`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException

from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError, PartitionCountMismatch
from agentstream.core.kafka import admin_client
from agentstream.processors.engine._state import (
    CLOCKS,
    GLOBAL_PARTITION,
    LEGACY_CLOCKS,
    LEGACY_TRACKER,
    LOW_CLOCK,
    RUNS,
    encode,
    read_changelog,
)
from agentstream.processors.engine._watermarks import PartitionClocks

__all__ = ["migrate_changelog", "partition_of", "prepare_changelog"]


def partition_counts(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """The partition count of each topic (-1: it does not exist)."""
    admin = admin_client(settings)
    try:
        metadata = admin.list_topics(timeout=30)
    except KafkaException as exc:
        raise AgentstreamError(f"processors: cannot read the topics' metadata: {exc}") from exc
    return {
        topic: len(metadata.topics[topic].partitions)
        if topic in metadata.topics and metadata.topics[topic].error is None
        else -1
        for topic in topics
    }


def prepare_changelog(
    settings: Settings,
    producer: Any,
    inputs: list[str],
    changelog: str,
    ensure_topic: Callable[[str, int], None] | None,
) -> int:
    """Check the layout, create or migrate the changelog; the partition count."""
    counts = partition_counts(settings, inputs)
    sizes = set(counts.values())
    if len(sizes) != 1 or -1 in sizes:
        raise PartitionCountMismatch(counts | partition_counts(settings, [changelog]))
    (partitions,) = sizes
    if ensure_topic is not None:
        ensure_topic(changelog, partitions)
    have = partition_counts(settings, [changelog])[changelog]
    deadline = time.monotonic() + 30
    while have < 0 and time.monotonic() < deadline:  # just created: not in the metadata yet
        time.sleep(0.1)
        have = partition_counts(settings, [changelog])[changelog]
    if have == 1 and partitions > 1:
        migrate_changelog(settings, producer, changelog, partitions)
    elif have != partitions:
        raise PartitionCountMismatch(counts | {changelog: have})
    return partitions


def migrate_changelog(settings: Settings, producer: Any, topic: str, partitions: int) -> int:
    """Move the single-partition changelog of the release before into the partitioned
    layout; the records written.

    Reads partition 0 to its end, adds the partitions, then in one transaction (the
    engine's producer, fenced already) writes each run on its partition (its ``p``, or its
    ``run_id``'s murmur2 partition when an older release did not record it) with a
    tombstone on partition 0, and splits the clocks into one entry per partition index.
    The old global rollup cells stay on partition 0 and become partition 0's stage-1
    cells; alert states of scopes whose partials go to another partition restart.
    Run the first start after the upgrade with one worker: a second worker starting while
    the first migrates finds the new partitions before the migration's records.
    """
    timeout = settings.worker.restore_timeout_s
    state = read_changelog(settings, topic, timeout)
    _add_partitions(settings, topic, partitions)
    written = 0

    def put(key: bytes, value: Any, partition: int) -> None:
        nonlocal written
        producer.produce(topic, encode(value), key, partition=partition)
        written += 1

    try:
        producer.begin_transaction()
        for run_id, run in RUNS.items(state).items():
            p = run.get("p")
            if p is None:
                p = partition_of(run_id, partitions)
                run = {**run, "p": p}
                put(RUNS.key(run_id), run, p)
            elif p != GLOBAL_PARTITION:
                put(RUNS.key(run_id), run, p)
            if p != GLOBAL_PARTITION:
                put(RUNS.key(run_id), None, GLOBAL_PARTITION)
        legacy = CLOCKS.items(state).get(LEGACY_CLOCKS)
        if legacy is not None:
            clocks = PartitionClocks(legacy)
        elif LEGACY_TRACKER in state:
            clocks = PartitionClocks.from_legacy(state[LEGACY_TRACKER])
        else:
            clocks = None
        if clocks is not None:
            for p in sorted({q for _, q in clocks.newest} | set(clocks.index)):
                put(CLOCKS.key(str(p)), clocks.entry(p), p)
            put(CLOCKS.key(LOW_CLOCK), clocks.low, GLOBAL_PARTITION)
            put(CLOCKS.key(LEGACY_CLOCKS), None, GLOBAL_PARTITION)
            put(LEGACY_TRACKER.encode(), None, GLOBAL_PARTITION)
        producer.commit_transaction(60)
    except KafkaException as exc:
        producer.abort_transaction(30)
        raise AgentstreamError(f"cannot migrate the processors' changelog {topic}: {exc}") from exc
    return written


def _add_partitions(settings: Settings, topic: str, partitions: int) -> None:
    from confluent_kafka.cimpl import NewPartitions

    admin = admin_client(settings)
    future = admin.create_partitions([NewPartitions(topic, partitions)])[topic]
    try:
        future.result(120)
    except (KafkaException, TimeoutError) as exc:
        raise AgentstreamError(
            f"cannot add partitions to the processors' changelog {topic} (1 -> {partitions}): {exc}"
        ) from exc
    deadline = time.monotonic() + 30
    while partition_counts(settings, [topic])[topic] != partitions:
        if time.monotonic() > deadline:
            raise AgentstreamError(f"{topic}: the new partitions are not in the metadata")
        time.sleep(0.2)


def partition_of(key: str, partitions: int) -> int:
    """The partition the Emitter (murmur2, like the Java clients) gives a record keyed
    ``key``: where a run's events are, for runs an older release stored without it."""
    data = key.encode()
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest, tail = length % 4, length - length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h = ((h ^ data[tail]) * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions
