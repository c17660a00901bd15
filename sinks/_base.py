"""The sink contract: ``Sink`` (setup / add / flush / close) and ``BatchingSink``.

A sink receives items one at a time, each under a *key* (for ClickHouse: the
table) and optionally with the Kafka :class:`Position` it came from. A
:class:`BatchingSink` groups items per key into :class:`Batch` es of at most
``batch_size`` items and writes a batch when it is full, when its oldest item
is ``flush_interval_s`` old, or on ``flush(force=True)``.

Failures and back-pressure:

* ``write`` raising :class:`~agentstream.core.errors.StorageError` keeps the batch
  buffered (same items, same :meth:`Batch.token`), schedules a retry with
  exponential backoff (``retry_initial_s`` doubling up to ``retry_max_s``) and
  ends the flush with the error in :attr:`FlushReport.error` (what was written
  before it stays reported); until the retry is due, ``flush`` attempts nothing.
* ``add`` raises :class:`~agentstream.core.errors.BackPressure` once
  ``max_buffered_rows`` items wait; its ``retry_after`` says when a flush will
  next be attempted. Memory stays bounded while the destination is slow.
* ``write`` returns the items the destination refused for good
  (:class:`Rejected`, with the reason); they leave the buffer and the caller
  dead-letters them.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Generic, Self, TypeVar

from agentstream.core.config import SinkSettings
from agentstream.core.errors import BackPressure, StorageError

__all__ = ["Batch", "BatchTiming", "BatchingSink", "FlushReport", "Position", "Rejected", "Sink"]

T = TypeVar("T")

#: a Kafka topic-partition
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Position:
    """Where an item came from: a Kafka topic, partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Rejected(Generic[T]):
    """An item the destination refused for good, and why."""

    key: str
    item: T
    position: Position | None
    reason: str
    error_type: str


@dataclass(frozen=True, slots=True)
class BatchTiming:
    """One ``write`` attempt: its key, its size, how long it took, whether it succeeded."""

    key: str
    rows: int
    seconds: float
    ok: bool


@dataclass
class FlushReport(Generic[T]):
    """What one ``flush`` did: rows written per key, batches, refused items."""

    written: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    rejected: list[Rejected[T]] = field(default_factory=list)
    #: True when nothing was attempted because a retry is not due yet
    deferred: bool = False
    #: the write failure that ended this flush (the batch stays buffered)
    error: StorageError | None = None
    #: every write attempted, in order (for the batch-latency metric)
    timings: list[BatchTiming] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows written, all keys together."""
        return sum(self.written.values())

    def raise_for_error(self) -> None:
        """Raise the write failure, if there was one."""
        if self.error is not None:
            raise self.error


class Batch(Generic[T]):
    """Items of one key, in arrival order, with their positions."""

    __slots__ = ("_token", "items", "key", "opened_at", "positions")

    def __init__(
        self,
        key: str,
        opened_at: float,
        items: list[T] | None = None,
        positions: list[Position | None] | None = None,
    ) -> None:
        self.key = key
        self.opened_at = opened_at
        self.items: list[T] = items if items is not None else []
        self.positions: list[Position | None] = positions if positions is not None else []
        self._token: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    def append(self, item: T, position: Position | None) -> None:
        self.items.append(item)
        self.positions.append(position)
        self._token = None

    def token(self) -> str | None:
        """A deduplication token derived from the key and the Kafka positions.

        A batch rebuilt from the same records (a retry, or a replay that cuts
        the same batch) has the same token, so the destination can drop it.
        ``None`` when an item has no position (nothing stable to derive from).
        """
        if self._token is None:
            if not self.positions or any(p is None for p in self.positions):
                return None
            parts = sorted(f"{p.topic}:{p.partition}:{p.offset}" for p in self.positions if p)
            digest = hashlib.sha256("\n".join([self.key, *parts]).encode()).hexdigest()
            self._token = f"{self.key}-{digest[:32]}"
        return self._token

    def split(self) -> tuple[Batch[T], Batch[T]]:
        """The first and the second half (to isolate an item the destination refuses)."""
        half = len(self.items) // 2
        return (
            Batch(self.key, self.opened_at, self.items[:half], self.positions[:half]),
            Batch(self.key, self.opened_at, self.items[half:], self.positions[half:]),
        )

    def lowest_offsets(self) -> dict[TopicPartition, int]:
        """The lowest offset of each topic-partition in this batch."""
        low: dict[TopicPartition, int] = {}
        for pos in self.positions:
            if pos is not None:
                tp = (pos.topic, pos.partition)
                if tp not in low or pos.offset < low[tp]:
                    low[tp] = pos.offset
        return low


class Sink(ABC, Generic[T]):
    """Where items go: ``setup`` once, ``add`` items, ``flush`` them, ``close`` at the end."""

    def setup(self) -> None:
        """Prepare the destination (connections, tables). Default: nothing."""

    @abstractmethod
    def add(self, key: str, item: T, position: Position | None = None) -> None:
        """Accept ``item`` for ``key``; may raise :class:`BackPressure`."""

    @abstractmethod
    def flush(self, *, force: bool = False) -> FlushReport[T]:
        """Write what is due (everything when ``force``); a failure is in the report."""

    def close(self) -> None:
        """Write everything still buffered; raises :class:`StorageError` if that fails."""
        self.flush(force=True).raise_for_error()

    def __enter__(self) -> Self:
        self.setup()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()


class BatchingSink(Sink[T]):
    """A sink that writes per-key batches by size and by age, with retries and back-pressure.

    Subclasses implement :meth:`write` (one batch; return refused items, raise
    :class:`StorageError` for failures worth retrying).
    """

    def __init__(
        self, settings: SinkSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._batches: dict[str, deque[Batch[T]]] = {}
        self._buffered = 0
        self._failures = 0
        self._retry_at = 0.0

    @abstractmethod
    def write(self, batch: Batch[T]) -> Sequence[Rejected[T]]:
        """Write one batch; return the items refused for good."""

    @property
    def buffered(self) -> int:
        """Items waiting to be written."""
        return self._buffered

    @property
    def room(self) -> int:
        """Items ``add`` accepts before it raises :class:`BackPressure`."""
        return max(0, self.settings.max_buffered_rows - self._buffered)

    @property
    def failing(self) -> bool:
        """True while the last write failed and a retry is pending."""
        return self._failures > 0

    def retry_after(self) -> float:
        """Seconds until the next flush attempt may write (0 when it may write now)."""
        if self._failures:
            return max(0.0, self._retry_at - self._clock())
        return 0.0

    def add(self, key: str, item: T, position: Position | None = None) -> None:
        if self._buffered >= self.settings.max_buffered_rows:
            wait = self.retry_after() or self.settings.flush_interval_s
            raise BackPressure(wait, f"sink buffer full ({self._buffered} rows)")
        queue = self._batches.get(key)
        if queue is None:
            queue = self._batches[key] = deque()
        # Batch.append, inlined: this runs once per item
        batch = queue[-1] if queue else None
        if batch is None or len(batch.items) >= self.settings.batch_size:
            batch = Batch(key, self._clock())
            queue.append(batch)
        batch.items.append(item)
        batch.positions.append(position)
        batch._token = None
        self._buffered += 1

    def due(self) -> bool:
        """True when a batch is full or old enough, and no retry is pending."""
        now = self._clock()
        if self._failures and now < self._retry_at:
            return False
        return any(self._batch_due(queue, now) for queue in self._batches.values() if queue)

    def _batch_due(self, queue: deque[Batch[T]], now: float) -> bool:
        head = queue[0]
        return (
            len(queue) > 1
            or len(head) >= self.settings.batch_size
            or now - head.opened_at >= self.settings.flush_interval_s
        )

    def flush(self, *, force: bool = False) -> FlushReport[T]:
        report: FlushReport[T] = FlushReport()
        now = self._clock()
        if self._failures and now < self._retry_at and not force:
            report.deferred = True
            return report
        for key, queue in list(self._batches.items()):
            while queue and (force or self._batch_due(queue, now)):
                batch = queue[0]
                started = time.perf_counter()
                try:
                    rejected = self.write(batch)
                except StorageError as exc:
                    report.timings.append(
                        BatchTiming(key, len(batch), time.perf_counter() - started, False)
                    )
                    self._failures += 1
                    backoff = self.settings.retry_initial_s * 2 ** min(self._failures - 1, 30)
                    self._retry_at = self._clock() + min(self.settings.retry_max_s, backoff)
                    report.error = exc
                    return report
                report.timings.append(
                    BatchTiming(key, len(batch), time.perf_counter() - started, True)
                )
                queue.popleft()
                self._buffered -= len(batch)
                self._failures = 0
                report.batches += 1
                report.written[key] = report.written.get(key, 0) + len(batch) - len(rejected)
                report.rejected.extend(rejected)
            if not queue:
                del self._batches[key]
        return report

    def lowest_buffered_offsets(self) -> dict[TopicPartition, int]:
        """For each topic-partition with buffered items, the lowest buffered offset."""
        low: dict[TopicPartition, int] = {}
        for queue in self._batches.values():
            for batch in queue:
                for tp, offset in batch.lowest_offsets().items():
                    if tp not in low or offset < low[tp]:
                        low[tp] = offset
        return low

    def discard(self, partitions: Iterable[TopicPartition]) -> int:
        """Drop buffered items from ``partitions`` (revoked); returns how many went."""
        gone = set(partitions)
        dropped = 0
        for key, queue in list(self._batches.items()):
            kept: deque[Batch[T]] = deque()
            for batch in queue:
                keep = [
                    i
                    for i, pos in enumerate(batch.positions)
                    if pos is None or (pos.topic, pos.partition) not in gone
                ]
                dropped += len(batch) - len(keep)
                if keep:
                    kept.append(
                        Batch(
                            key,
                            batch.opened_at,
                            [batch.items[i] for i in keep],
                            [batch.positions[i] for i in keep],
                        )
                    )
            if kept:
                self._batches[key] = kept
            else:
                del self._batches[key]
        self._buffered -= dropped
        return dropped
