"""The engine's side of a rebalance, and where each state change goes in the changelog.

With the range assignor (eager protocol) every rebalance revokes the whole assignment
and assigns anew: the state of partition indexes assigned again is kept (nobody else had
them in between), the state of indexes gone is dropped, the new ones are restored from
their changelog partitions before any of their records is processed. Partitions *lost*
(the group moved on without this worker: a session expired) are dropped at once.
Nothing is decided between a revocation and the next assignment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException

from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError
from agentstream.processors.engine._restore import restore_state
from agentstream.processors.engine._state import (
    CLOCKS,
    GLOBAL_PARTITION,
    LEGACY_CLOCKS,
    LEGACY_TRACKER,
    LOW_CLOCK,
    RUNS,
    TrackedDict,
    encode,
    read_changelog_partitions,
)
from agentstream.processors.engine._watermarks import PartitionClocks
from agentstream.processors.lifecycle import TimeoutTracker
from agentstream.processors.rollups import RollupAggregator

__all__ = ["Rebalancing", "fresh_records"]

log = logging.getLogger("agentstream.processors")


def fresh_records(
    messages: Sequence[Any], next_offsets: dict[tuple[str, int], int]
) -> tuple[list[Any], dict[tuple[str, int], int]]:
    """The records of a batch not processed yet, and how many were not, per partition.

    ``next_offsets``: per partition, the offset after the last record processed (from the
    committed offset at the assignment on); moved past each record kept. A record below it
    was processed already: librdkafka restarts a partition's fetch at the committed offset
    when the partition is revoked and assigned again, and when both happen inside one
    ``consume`` the records of the old fetch come back in the same batch. Errors are kept.
    """
    kept: list[Any] = []
    skipped: dict[tuple[str, int], int] = {}
    for message in messages:
        if message.error():
            kept.append(message)
            continue
        key, offset = (message.topic(), message.partition()), message.offset()
        if offset < next_offsets.get(key, 0):
            skipped[key] = skipped.get(key, 0) + 1
            continue
        next_offsets[key] = offset + 1
        kept.append(message)
    return kept, skipped


class Rebalancing:
    """Mixed into :class:`~processors.engine._engine.ProcessorEngine`: the rebalance
    callbacks and the changelog writes (the attributes are the engine's)."""

    settings: Settings
    _producer: Any
    _state_topic: str
    _runs: TrackedDict
    _trackers: dict[int | None, TimeoutTracker]
    _clocks: PartitionClocks
    _positions: dict[tuple[str, int], int]
    _started: dict[tuple[str, int], int]
    _at: dict[tuple[str, int], int]
    _next: dict[tuple[str, int], int]
    _gone: dict[str, int | None]
    _held: set[int]
    _active: set[int]
    _restored: bool
    _partitions: int
    _drop_legacy: bool
    beat: float

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        """Keep the state of indexes kept, drop the others', restore the new ones'."""
        self._rebalanced()
        got = {tp.partition for tp in partitions}
        self._drop(self._held - got)
        self._from_committed(consumer, partitions)
        self._load(got - self._held)
        self._held = set(got)
        self._active = set(got)
        self._restored = True
        # a restore (up to restore_timeout_s) is progress: the watchdog counts from here
        self.beat = time.monotonic()

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        # eager protocol: everything is revoked; the state is kept until the assignment
        # says which indexes come back (no transaction is open: the last batch committed)
        self._rebalanced()
        self._active -= {tp.partition for tp in partitions}

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        # the group moved on without us: another worker may have processed these
        self._rebalanced()
        lost = {tp.partition for tp in partitions}
        self._active -= lost
        self._drop(self._held & lost)
        self._held -= lost

    def _from_committed(self, consumer: Any, partitions: list[Any]) -> None:
        """Each assigned partition starts at the group's committed offset: what was read
        below it is processed (by this worker, or by another since), see
        :func:`fresh_records`; the lags count from it too (``partition_lags``). A partition
        no longer assigned has no entry (its records are dropped before this filter)."""
        try:
            committed = consumer.committed(partitions, timeout=30)
        except KafkaException as exc:
            raise AgentstreamError(f"processors: cannot read the committed offsets: {exc}") from exc
        self._next = {}
        for tp in committed:
            self._started[(tp.topic, tp.partition)] = tp.offset
            if tp.offset >= 0:
                self._next[(tp.topic, tp.partition)] = tp.offset

    def _drop_stages(self, indexes: set[int]) -> None:
        raise NotImplementedError  # processors.engine._stages

    def _load_stages(self, p: int, state: dict[str, Any], rollups: RollupAggregator) -> None:
        raise NotImplementedError  # processors.engine._stages

    def _write_stages(self) -> None:
        raise NotImplementedError  # processors.engine._stages

    def _rebalanced(self) -> None:
        self._clocks.unassigned()
        self._started.clear()
        self._at.clear()

    def _drop(self, indexes: set[int]) -> None:
        """Forget the state of partition indexes this worker no longer has."""
        if not indexes:
            return
        runs = [k for k, r in self._runs.items() if r.get("p") in indexes]
        self._runs.forget(runs)
        for p in indexes:
            self._trackers.pop(p, None)
        self._clocks.drop(indexes)
        self._drop_stages(indexes)
        if GLOBAL_PARTITION in indexes:
            self._runs.forget([k for k, r in self._runs.items() if r.get("p") is None])
            self._trackers.pop(None, None)
            self._drop_legacy = False
        log.info("processors: let go of partitions %s (%d runs)", sorted(indexes), len(runs))

    def _load(self, indexes: set[int]) -> None:
        """Restore the state of newly assigned partition indexes from their changelog
        partitions (read to their end; or the worker stops with an error)."""
        if not indexes:
            return
        timeout = self.settings.worker.restore_timeout_s
        per = read_changelog_partitions(
            self.settings, self._state_topic, timeout, partitions=indexes
        )
        runs = cells = alerts = 0
        for p in sorted(indexes):
            state = per.get(p, {})
            restored = restore_state(self.settings, state)
            self._runs.absorb(dict(restored.runs))
            self._trackers.update(restored.trackers)
            self._clocks.load(p, restored.clocks.entry(p))
            self._load_stages(p, state, restored.rollups)
            if p == GLOBAL_PARTITION:
                if restored.clocks.low is not None:
                    # never back: a low watermark this worker already moved past stays
                    self._clocks.low = max(self._clocks.low or 0, restored.clocks.low)
                self._drop_legacy = restored.legacy
            runs, cells, alerts = (
                runs + len(restored.runs),
                cells + restored.cells,
                alerts + len(restored.alerts),
            )
        log.info(
            "restored partitions %s: %d runs, %d rollup entries, %d alert states",
            sorted(indexes),
            runs,
            cells,
            alerts,
        )

    def _write_state(self) -> None:
        """Each change to the changelog partition of its partition index (``_state``)."""
        produce, topic, home = self._producer.produce, self._state_topic, GLOBAL_PARTITION
        gone = self._gone
        for key, value in self._runs.drain().items():
            p = value.get("p") if value is not None else gone.pop(key, None)
            produce(topic, encode(value), RUNS.key(key), partition=home if p is None else p)
        gone.clear()
        self._write_stages()
        dirty = {p for _, p in self._positions} | (self._clocks.take_moved() & self._held)
        if self._drop_legacy:
            dirty |= self._held
        for p in dirty:
            produce(topic, encode(self._clocks.entry(p)), CLOCKS.key(str(p)), partition=p)
        if home not in self._held:
            return
        produce(topic, encode(self._clocks.low), CLOCKS.key(LOW_CLOCK), partition=home)
        if self._drop_legacy:
            produce(topic, None, LEGACY_TRACKER.encode(), partition=home)
            produce(topic, None, CLOCKS.key(LEGACY_CLOCKS), partition=home)
