"""The two rollup stages on Kafka: per input partition → partials topic → merge per scope.

**Stage 1** (per partition index ``p`` this worker holds): a
:class:`~processors.rollups.RollupAggregator` on ``p``'s own event clock (the index
clock minus ``rollups.allowed_lateness_s``; the wall clock once ``p`` is read to its end
and quiet for ``rollups.idle_after_s``). Lateness, the horizon, ``too late`` and
``late_events`` are therefore per partition, and the windows kept for the deadlines of
live runs are those of ``p``'s runs. Its cells are state on changelog partition ``p``
(store ``cell``). Instead of rollups it sends *partials* (the full current value of a
cell of ``p``) to ``<prefix><app_id>-rollup-partials`` (the inputs' partition count),
partition ``murmur2(scope key)``, when a window closes at ``p`` and whenever it is
corrected; then, once per transaction when they moved, its marks (closed, dropped, idle)
to every partials partition. An idle ``p`` (no input for ``rollups.idle_after_s``) also
sends the current value of its open windows and holds no window back.

**Stage 2** (per partials partition ``q``, the same index: the range assignor gives a
worker the same partitions of every topic it reads, the partials topic included): a
:class:`~processors.rollups.MergeStage` (state on changelog partition ``q``, store
``merge``) merges the sources' partials into the rollups (:mod:`processors.rollups._partials`),
and the :class:`~processors.alerts.AlertEvaluator` reads them (alert states of the scopes
of ``q`` on changelog partition ``q``). Everything goes out in the batch's transaction
(partials, marks, rollups, alerts, state, offsets of the inputs and of the partials
topic), so the whole pipeline stays exactly once; the rollups are the same with 1, 2 or N
workers.
"""

from __future__ import annotations

import logging
from functools import lru_cache, partial
from typing import Any

from agentstream.core import kafka
from agentstream.core.config import Settings
from agentstream.core.errors import CodecError, PartitionCountMismatch
from agentstream.core.topics import ensure_topics
from agentstream.processors._clock import now_us, seconds_to_us
from agentstream.processors.alerts import AlertEvaluator
from agentstream.processors.engine._assignment import partition_counts, partition_of
from agentstream.processors.engine._state import (
    ALERTS,
    CELLS,
    GLOBAL_PARTITION,
    MERGE,
    TrackedDict,
    encode,
)
from agentstream.processors.engine._tallies import EngineStats, Tallies
from agentstream.processors.engine._watermarks import PartitionClocks
from agentstream.processors.lifecycle import TimeoutTracker
from agentstream.processors.rollups import (
    DUPLICATE,
    META_KEY,
    RESOLUTION_US,
    TOO_LATE,
    Cell,
    MergeStage,
    Partial,
    RollupAggregator,
    RollupEvent,
    decode_message,
    encode_mark,
    encode_partial,
)
from agentstream.schemas import Record, Resolution, Rollup

__all__ = ["TwoStageRollups", "ensure_partials", "partials_topic"]

log = logging.getLogger("agentstream.processors")
_SECOND = RESOLUTION_US["1s"]
#: a quiet partition's marks still go out when its dropped mark moved this far: the merge
#: stage forgets windows only below every source's dropped mark
_PRUNE_STEP_US = 60 * _SECOND
_MARK_KEY = b"mark"


def partials_topic(settings: Settings) -> str:
    """The internal topic between the two stages."""
    return f"{settings.topics.prefix}{settings.worker.app_id}-rollup-partials"


def ensure_partials(settings: Settings, partitions: int) -> str:
    """Create the partials topic with the inputs' partition count if it does not exist;
    :class:`PartitionCountMismatch` if it has another count. Its name."""
    topic = partials_topic(settings)
    ensure_topics(
        settings.kafka.bootstrap_servers,
        [topic],
        partitions=partitions,
        replication=settings.kafka.replication_factor,
        client_config=kafka.client_config(settings, "admin", "admin"),
        partitions_setting=None,  # checked against the inputs below
        topic_config={"retention.ms": str(round(settings.rollups.partials_retention_s * 1000))},
    )
    have = partition_counts(settings, [topic])[topic]
    if have != partitions:
        raise PartitionCountMismatch({"inputs": partitions, topic: have})
    return topic


def _floor(us: int | None) -> int | None:
    return None if us is None else us - us % _SECOND


@lru_cache(maxsize=65_536)
def _home(scope_key: str, partitions: int) -> int:
    return partition_of(scope_key, partitions)


class TwoStageRollups:
    """Mixed into :class:`~processors.engine._engine.ProcessorEngine` (its attributes)."""

    settings: Settings
    stats: EngineStats
    _producer: Any
    _state_topic: str
    _partials: str
    _partitions: int
    _trackers: dict[int | None, TimeoutTracker]
    _clocks: PartitionClocks
    _held: set[int]
    _active: set[int]
    _evaluator: AlertEvaluator
    _alert_state: TrackedDict
    _tallies: Tallies

    def _init_stages(self) -> None:
        rollups = self.settings.rollups
        self._lateness_us = seconds_to_us(rollups.allowed_lateness_s)
        #: stage 1: per held partition index, its aggregator, the 1 s boundary its windows
        #: were closed through, the marks last sent, the meta entry last written
        self._aggs: dict[int, RollupAggregator] = {}
        self._closed_through: dict[int, int] = {}
        self._marks_sent: dict[int, tuple[int | None, int | None, bool]] = {}
        self._meta_written: dict[int, Any] = {}
        #: partition indexes whose aggregator took an event / sent partials in this batch
        self._touched: set[int] = set()
        self._moved: set[int] = set()
        #: stage 2: per held partials partition, its merge stage
        self._merges: dict[int, MergeStage] = {}
        #: the changelog partition of each alert state, and the changes of this batch
        self._alert_home: dict[str, int] = {}
        self._alert_changes: dict[str, tuple[int, Any]] = {}
        #: records left in the assigned partials partitions after the last batch (None: not
        #: known); this batch sent partials or marks; the last batch settled (``settled``)
        self._partials_lag: int | None = None
        self._partials_sent = False
        self._settled = False

    @property
    def settled(self) -> bool:
        """The merge stage has caught up with this worker's stage 1: the last transaction
        started with the partials partitions read to their end and sent no partial or mark
        (every rollup the records read so far give is out; what tests and tools wait for)."""
        return self._settled

    def _new_aggregator(self) -> RollupAggregator:
        return RollupAggregator(self.settings.rollups, event_watermark=False)

    # -- stage 1 -----------------------------------------------------------------

    def _add_rollup(
        self,
        event: RollupEvent,
        message: Any,
        clock: int,
        p: int | None,
        event_us: int | None = None,
    ) -> None:
        index = GLOBAL_PARTITION if p is None else p  # a legacy run: partition 0's owner
        agg = self._aggs.get(index)
        if agg is None:
            agg = self._aggs[index] = self._new_aggregator()
        verdict = agg.add(event, clock, event_us)
        if verdict == DUPLICATE:
            self.stats.rollup_duplicates += 1
            return
        if verdict != TOO_LATE:
            self._touched.add(index)
            return
        self.stats.too_late += 1
        if message is None:  # a timeout whose window is gone: counted, logged
            log.warning(
                "processors: a timeout dated %s is too late for its window", event.event_time
            )
            return
        horizon = self.settings.rollups.horizon_s
        reason = (
            f"too late for its window: its 1 s window ended more than {horizon:g} s "
            "(rollups.horizon_s) before its partition's event time"
        )
        self._dead_letter(message, reason, "TooLate", event, detected_now=True)

    def _dead_letter(
        self,
        message: Any,
        reason: str,
        error_type: str,
        record: Record | None = None,
        *,
        detected_now: bool = False,
    ) -> None:
        raise NotImplementedError  # the engine's

    def _advance_partition(self, p: int) -> None:
        """Close the windows of ``p`` its event clock (minus the lateness) has passed, on
        1 s boundaries: a fixed place in ``p``'s input."""
        clock = self._clocks.index.get(p)
        agg = self._aggs.get(p)
        if clock is None or agg is None:
            return
        mark = clock - self._lateness_us
        if mark - mark % _SECOND > self._closed_through.get(p, 0):
            self._closed_through[p] = mark - mark % _SECOND
            self._send_partials(
                p, agg.advance_cells(mark, keep_from=lambda: self._open_deadline(p))
            )

    def _advance_partitions(self) -> None:
        """At each batch: the lags just learnt may have let an index clock move (a partition
        found read to its end no longer holds it)."""
        for p in sorted(self._active):
            self._advance_partition(p)

    def _send_partials(self, p: int, cells: list[tuple[Resolution, int, Cell]]) -> None:
        produce, topic, n = self._producer.produce, self._partials, self._partitions
        for resolution, start, cell in cells:
            key = cell.scope.key
            produce(
                topic,
                encode_partial(p, resolution, start, cell),
                key.encode(),
                partition=_home(key, n),
            )
        if cells:
            self._moved.add(p)
            self._partials_sent = True
            self._tallies.count_out(topic, len(cells))

    def _open_deadline(self, p: int) -> int | None:
        """The earliest deadline of a live run of ``p``: its timeout will count in that
        window, so ``p``'s aggregator keeps it (asked whenever its dropped mark would move)."""
        trackers = self._trackers
        found = [trackers.get(p)]
        if p == GLOBAL_PARTITION:
            found.append(trackers.get(None))  # runs restored without their partition
        deadlines = [d for t in found if t is not None and (d := t.open_deadline()) is not None]
        return min(deadlines, default=None)

    def _close_windows(self, now: float) -> None:
        """Stage 1 of every active index (corrections; the wall clock where it may stand
        in; an idle index's open windows), the marks that moved; then stage 2."""
        clocks, idle_after = self._clocks, self.settings.rollups.idle_after_s
        clocks.low_mark(now, idle_after)  # the clock of runs restored without a partition
        wall = now_us() - self._lateness_us
        for p in sorted(self._active):
            agg = self._aggs.get(p)
            if agg is None:
                agg = self._aggs[p] = self._new_aggregator()
            known = p in clocks.assigned
            mark = wall if known and clocks.wall_ok(p, now, idle_after) else None
            self._send_partials(
                p, agg.advance_cells(mark, keep_from=partial(self._open_deadline, p))
            )
            sent = self._marks_sent.get(p)
            idle = clocks.idle(p, now, idle_after) if known else (sent is not None and sent[2])
            if idle and (sent is None or not sent[2] or p in self._touched):
                self._send_partials(p, agg.open_cells())
            marks = (_floor(agg.closed), _floor(agg.dropped), idle)  # windows end on seconds
            # an idle partition's marks move with the wall clock: sent only with partials
            # (what they close), when it turns idle, or once its dropped mark moved a minute
            # (so the merge stage can forget windows), not every second while it is quiet
            quiet = (
                idle
                and sent is not None
                and sent[2]
                and p not in self._moved
                and (marks[1] or 0) - (sent[1] or 0) < _PRUNE_STEP_US
            )
            if marks != sent and not quiet:
                self._marks_sent[p] = marks
                self._partials_sent = True
                self._tallies.count_out(self._partials, self._partitions)
                for q in range(self._partitions):
                    self._producer.produce(
                        self._partials, encode_mark(p, *marks), _MARK_KEY, partition=q
                    )
        self._touched.clear()
        self._moved.clear()
        for q in sorted(self._active):
            merge = self._merges.get(q)
            if merge is not None:
                self._emit_rollups(q, merge.advance())

    # -- stage 2 -----------------------------------------------------------------

    def _handle_partial(self, message: Any) -> None:
        q = message.partition()
        self.stats.partials += 1
        try:
            item = decode_message(message.value())
            if item.src >= self._partitions:
                raise CodecError(f"rollup partial: field 'src': no partition {item.src}")
        except CodecError as exc:
            self._dead_letter(message, str(exc), type(exc).__name__)
            return
        merge = self._merges.get(q)
        if merge is None:
            merge = self._merges[q] = MergeStage(self._partitions, self._accuracy)
        if isinstance(item, Partial):
            if not merge.partial(item):
                self.stats.partials_refused += 1
                log.warning(
                    "processors: a partial of partition %d for %s %s arrived after its window "
                    "was forgotten",
                    item.src,
                    item.resolution,
                    item.cell.scope.key,
                )
        else:
            merge.mark(item)

    @property
    def _accuracy(self) -> float:
        return self.settings.rollups.sketch_relative_accuracy

    def _emit_rollups(self, q: int, rollups: list[Rollup]) -> None:
        for rollup in rollups:
            self._send("rollups", rollup.scope_key, rollup)
            self.stats.rollups += 1
            for alert in self._evaluator.process(rollup):
                self._send("alerts", f"{alert.rule_id}|{alert.scope_key}", alert)
                self.stats.alerts += 1
            for key, value in self._alert_state.drain().items():
                self._alert_home[key] = q
                self._alert_changes[key] = (q, value)

    def _send(self, stream: str, key: str, record: Record, headers: Any = None) -> None:
        raise NotImplementedError  # the engine's

    # -- state ---------------------------------------------------------------------

    def _load_stages(self, p: int, state: dict[str, Any], rollups: RollupAggregator) -> None:
        """Take the stage state of changelog partition ``p`` (restored)."""
        self._aggs[p] = rollups
        mark = rollups.watermark
        self._closed_through[p] = 0 if mark is None else mark - mark % _SECOND
        self._marks_sent.pop(p, None)
        self._meta_written.pop(p, None)
        self._merges[p] = MergeStage.restore(
            self._partitions, self._accuracy, MERGE.items(state).items()
        )
        n, kept = self._partitions, {}
        for key, value in ALERTS.items(state).items():
            scope = value.get("scope_key") if isinstance(value, dict) else None
            if isinstance(scope, str) and _home(scope, n) == p:
                kept[key] = value
                self._alert_home[key] = p
            else:  # an older release kept every alert state on partition 0
                self._alert_changes[key] = (p, None)
        self._alert_state.absorb(kept)

    def _drop_stages(self, indexes: set[int]) -> None:
        for p in indexes:
            self._aggs.pop(p, None)
            self._merges.pop(p, None)
            self._closed_through.pop(p, None)
            self._marks_sent.pop(p, None)
            self._meta_written.pop(p, None)
        gone = [k for k, q in self._alert_home.items() if q in indexes]
        self._alert_state.forget(gone)
        for key in gone:
            del self._alert_home[key]

    def _write_stages(self) -> None:
        """Stage 1 cells and stage 2 state to the changelog partition of their index."""
        produce, topic = self._producer.produce, self._state_topic
        for p in sorted(self._held):
            agg = self._aggs.get(p)
            if agg is not None:
                changes = agg.drain_changes()
                meta = changes.pop(META_KEY)
                if meta != self._meta_written.get(p):
                    self._meta_written[p] = changes[META_KEY] = meta
                for key, value in changes.items():
                    produce(topic, encode(value), CELLS.key(key), partition=p)
            merge = self._merges.get(p)
            if merge is not None:
                for key, value in merge.drain_changes().items():
                    produce(topic, encode(value), MERGE.key(key), partition=p)
        for key, (q, value) in self._alert_changes.items():
            produce(topic, encode(value), ALERTS.key(key), partition=q)
        self._alert_changes.clear()
