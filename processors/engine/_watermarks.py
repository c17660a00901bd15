"""The engine's clocks: per input partition, per partition index, and the low watermark.

All input topics have the same partition count and are keyed by ``run_id`` with murmur2,
so partition index ``p`` of every input topic holds the same runs. The clocks follow that:

* **newest** ``(topic, p)``: the newest (sane) event time read from one input partition.
  It decides whether a rollup event is too late for its window (its own partition's
  order only, so the verdict is the same whatever the batching or partition interleaving).
* **index clock** ``p``: event time of partition index ``p``: the oldest *newest* over its
  topics that still have records to read (the slowest one bounds what has surely been
  seen); when all of them are read to their end, the newest of them. It drives the
  timeouts of the runs of ``p``; it never goes back and holds while a topic of ``p``
  with records has not been read from yet.
* **low watermark**: the oldest index clock, leaving out indexes read to their end and
  quiet for ``idle_after``; it closes rollup windows.

The **wall clock** may stand in for the event time of index ``p`` only while ``p`` is
assigned and every topic of ``p`` has been read to its end *continuously* for
``idle_after`` — measured from the moment this process saw it so (monotonic time, never
a wall time restored from the changelog): never while unassigned, rebalancing,
restoring, just resumed or reading a backlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from confluent_kafka import TopicPartition

from agentstream.core.metrics import consumer_lag

__all__ = ["ClockState", "IndexClock", "PartitionClocks", "partition_lags"]


class ClockState(TypedDict):
    """JSON-able state of every index (the single-partition layout's ``clock:partitions``)."""

    newest: dict[str, int]
    index: dict[str, int]
    low: int | None


class IndexClock(TypedDict):
    """JSON-able clocks of one partition index (the changelog's ``clock:<p>`` entry, on
    changelog partition ``p``): the newest event time per input topic, the index clock."""

    newest: dict[str, int]
    index: int | None


class PartitionClocks:
    """Event clocks of the assigned input partitions (see the module doc)."""

    def __init__(self, state: ClockState | None = None) -> None:
        self.newest: dict[tuple[str, int], int] = {}
        self.index: dict[int, int] = {}
        self.low: int | None = None
        if state is not None:
            for key, value in state["newest"].items():
                topic, p = key.rsplit("|", 1)
                self.newest[(topic, int(p))] = value
            self.index = {int(p): v for p, v in state["index"].items()}
            self.low = state["low"]
        #: assigned input partitions and their lag after the batch (None: not known yet)
        self._lags: dict[tuple[str, int], int | None] = {}
        #: the same, at the record being handled (the batch's records not handled yet added)
        self._left: dict[tuple[str, int], int | None] = {}
        #: per index: since when (monotonic s) every topic of it is read to its end
        self._caught_up_since: dict[int, float] = {}
        #: per index: when its last record was read (monotonic s)
        self._last_input: dict[int, float] = {}
        #: indexes whose clock moved since :meth:`take_moved` (their changelog entry is due)
        self._moved: set[int] = set()
        #: derived from the keys of ``_left`` / ``_lags`` (rebuilt when either is replaced):
        #: the per-record clock updates read them instead of scanning every partition
        self._by_index: dict[int, tuple[tuple[str, int], ...]] = {}
        self._unread_n: dict[int, int] = {}
        self._by_index_of: object = None
        self._assigned: frozenset[int] = frozenset()
        self._assigned_of: object = None

    @classmethod
    def from_legacy(cls, tracker: dict[str, Any]) -> PartitionClocks:
        """The clocks of today's release's ``tracker`` changelog entry."""
        clocks = cls()
        for key, value in (tracker.get("partitions") or {}).items():
            topic, p = key.rsplit("|", 1)
            clocks.newest[(topic, int(p))] = int(value)
        for (_, p), value in clocks.newest.items():
            clocks.index[p] = min(clocks.index.get(p, value), value)
        return clocks

    def entry(self, p: int) -> IndexClock:
        """The clocks of index ``p`` (its changelog entry)."""
        return {
            "newest": {t: v for (t, q), v in self.newest.items() if q == p},
            "index": self.index.get(p),
        }

    def load(self, p: int, entry: IndexClock) -> None:
        """Take the clocks of index ``p`` from its changelog entry (a partition assigned)."""
        for topic, value in entry["newest"].items():
            self.newest[(topic, p)] = value
        if entry["index"] is not None:
            self.index[p] = entry["index"]

    def drop(self, indexes: set[int]) -> None:
        """Forget the clocks of ``indexes`` (partitions revoked: their next owner has them)."""
        self.newest = {k: v for k, v in self.newest.items() if k[1] not in indexes}
        self.index = {p: v for p, v in self.index.items() if p not in indexes}
        for p in indexes:
            self._caught_up_since.pop(p, None)
            self._last_input.pop(p, None)

    def take_moved(self) -> set[int]:
        """The indexes whose clock moved since the last call (also without a record read:
        the lags alone can move it)."""
        moved, self._moved = self._moved, set()
        return moved

    def to_json(self) -> ClockState:
        return {
            "newest": {f"{t}|{p}": v for (t, p), v in self.newest.items()},
            "index": {str(p): v for p, v in self.index.items()},
            "low": self.low,
        }

    # -- what the consumer reports ---------------------------------------------

    def unassigned(self) -> None:
        """A rebalance started (or the assignment is unknown): no index is caught up."""
        self._lags = {}
        self._left = {}
        self._caught_up_since.clear()

    def refresh(
        self,
        lags: dict[tuple[str, int], int | None] | None,
        now: float,
        messages: Sequence[Any] = (),
    ) -> None:
        """The lag of every assigned partition after the batch just consumed (None: could not
        be read), at monotonic ``now``; ``messages``: that batch (the lag while its records
        are handled is counted down by :meth:`consumed`).

        The lags are read once the batch is consumed: taken as they are, a partition read to
        its end *in this batch* would count as read while its records are still handled,
        and another topic's newer records would pass for the partition's clock.
        """
        if lags is None:
            self.unassigned()
            return
        self._lags = lags
        batch: dict[tuple[str, int], int] = {}
        for message in messages:
            if not message.error():
                key = (message.topic(), message.partition())
                batch[key] = batch.get(key, 0) + 1
        self._left = {k: None if v is None else v + batch.get(k, 0) for k, v in lags.items()}
        behind: set[int] = set()
        for (_, p), lag in lags.items():
            if lag is None or lag > 0:
                behind.add(p)
        for p in {p for _, p in lags}:
            if p in behind:
                self._caught_up_since.pop(p, None)
            else:
                self._caught_up_since.setdefault(p, now)
        for p in [p for p in self._caught_up_since if all(q != p for _, q in lags)]:
            del self._caught_up_since[p]
        for p in {p for _, p in lags}:
            # a topic of p whose end was unknown held its clock: now it may move
            self._update_index(p)

    @property
    def assigned(self) -> set[int]:
        """The assigned partition indexes."""
        return set(self._assigned_indexes())

    def _assigned_indexes(self) -> frozenset[int]:
        if self._assigned_of is not self._lags:
            self._assigned = frozenset(p for _, p in self._lags)
            self._assigned_of = self._lags
        return self._assigned

    def _keys_of(self, p: int) -> tuple[tuple[str, int], ...]:
        """The ``_left`` keys of index ``p``."""
        if self._by_index_of is not self._left:
            self._index_left()
        return self._by_index.get(p, ())

    def _index_left(self) -> None:
        """Rebuild what is derived from ``_left``: its keys per index, and per index how
        many of its partitions have records left (kept up to date by :meth:`consumed`)."""
        by_index: dict[int, list[tuple[str, int]]] = {}
        unread: dict[int, int] = {}
        for key, v in self._left.items():
            by_index.setdefault(key[1], []).append(key)
            unread[key[1]] = unread.get(key[1], 0) + (v is None or v > 0)
        self._by_index = {q: tuple(keys) for q, keys in by_index.items()}
        self._unread_n = unread
        self._by_index_of = self._left

    @property
    def lag(self) -> int | None:
        """Records left to read over the assignment (None: not known yet)."""
        if not self._lags or any(v is None for v in self._lags.values()):
            return None
        return sum(v or 0 for v in self._lags.values())

    def caught_up(self, p: int | None = None) -> bool:
        """Index ``p`` (all assigned, with None) is read to its end."""
        if not self._lags:
            return False
        if p is None:
            return all(q in self._caught_up_since for q in self.assigned)
        return p in self._caught_up_since

    def _unread(self, p: int) -> bool:
        """Index ``p`` has records left at the record being handled."""
        if self._by_index_of is not self._left:
            self._index_left()
        return self._unread_n.get(p, 0) > 0

    def idle(self, p: int, now: float, idle_after_s: float) -> bool:
        """Index ``p`` has nothing left to read and read nothing for ``idle_after_s``
        (monotonic ``now``): it holds no rollup window back (the low watermark leaves it
        out; the merge stage too)."""
        return not self._unread(p) and now - self._last_input.get(p, 0.0) > idle_after_s

    def wall_ok(self, p: int, now: float, idle_after_s: float) -> bool:
        """May the wall clock stand in for the event time of index ``p`` (module doc)?"""
        since = self._caught_up_since.get(p)
        if since is None or now - since < idle_after_s:
            return False
        last = self._last_input.get(p)
        return last is None or now - last >= idle_after_s

    # -- events ------------------------------------------------------------------

    def consumed(self, topic: str, p: int) -> None:
        """One record of ``(topic, p)`` is being handled (whatever it holds)."""
        left = self._left.get((topic, p))
        if left:
            if self._by_index_of is not self._left:
                self._index_left()
            self._left[(topic, p)] = left - 1
            if left == 1:
                self._unread_n[p] -= 1

    def observe(self, topic: str, p: int, event_us: int, now: float) -> int:
        """A sane event of ``(topic, p)`` was read: the newest of that partition *before* it
        (its own time if it is the first); updates the clocks."""
        key = (topic, p)
        before = self.newest.get(key, event_us)
        if event_us > before or key not in self.newest:
            self.newest[key] = event_us
        self._last_input[p] = now
        self._update_index(p)
        return before

    def _update_index(self, p: int) -> None:
        # per record: one pass over the index's topics, no intermediate lists
        topics = self._keys_of(p)
        if not topics:
            return  # the assignment is not known: hold
        left, newest = self._left, self.newest
        mark: int | None = None
        if self._unread_n.get(p, 0):  # the oldest newest of the topics with records left
            for key in topics:
                records = left[key]
                if records is None or records > 0:
                    seen = newest.get(key)
                    if seen is None:
                        return  # a partition with records not read from yet: hold
                    if mark is None or seen < mark:
                        mark = seen
        else:  # every topic read to its end: the newest of them
            for key in topics:
                seen = newest.get(key)
                if seen is not None and (mark is None or seen > mark):
                    mark = seen
        if mark is None:
            return
        if mark > self.index.get(p, mark - 1):
            self.index[p] = mark
            self._moved.add(p)

    def low_mark(self, now: float, idle_after_s: float) -> int | None:
        """The low watermark (module doc); never goes back."""
        considered = self._assigned_indexes()
        if not considered:
            return self.low
        active = [
            p
            for p in considered
            if self._unread(p) or now - self._last_input.get(p, 0.0) <= idle_after_s
        ]
        if any(p not in self.index for p in active):
            return self.low  # an index with records not read from yet holds it
        marks = [self.index[p] for p in active] or [
            self.index[p] for p in considered if p in self.index
        ]
        if marks:
            mark = min(marks) if active else max(marks)
            if self.low is None or mark > self.low:
                self.low = mark
        return self.low


def partition_lags(
    consumer: Any, started: dict[tuple[str, int], int]
) -> dict[tuple[str, int], int | None]:
    """Records left per assigned partition, from the high watermarks of the last fetch.

    A partition nothing was consumed from since the assignment has no position: it starts
    at the group's committed offset (``started``: read once per assignment, by the
    engine's rebalance callback).
    Counting the whole partition instead (``consumer_lag``) kept a restarted worker whose
    predecessor had read a partition to its end "behind" forever: the wall clock never
    took over and due timeouts never fired.
    """
    lags = consumer_lag(consumer, started)
    out: dict[tuple[str, int], int | None] = {}
    for tp in consumer.position([TopicPartition(t, p) for t, p in lags]):
        key, lag = (tp.topic, tp.partition), lags[(tp.topic, tp.partition)]
        start = started.get(key, -1)
        if lag is not None and tp.offset < 0 and start >= 0:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            lag = max(0, high - start)
        out[key] = lag
    return out
