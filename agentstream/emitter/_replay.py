"""Re-sending spooled messages: shared by the Emitter's background thread and the CLI.

A :class:`ReplayJob` walks claimed segments in order, produces their records
(stopping, without blocking, when the producer's queue is full) and deletes a
segment once every readable record in it is accounted for: delivered, or written
again to a replacement segment that sorts where the original did (failed again)
— so a crash at any point may duplicate messages on the wire (the sink
deduplicates by ``event_id``) but never loses one. Bytes of a segment that hold
no readable frame (corruption, a torn tail) are copied to ``quarantine/`` first.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from confluent_kafka import KafkaError

from agentstream.core.errors import DeliveryError
from agentstream.emitter._spool import QUARANTINE, ClaimedSegment, Spool, SpoolRecord

__all__ = [
    "PERMANENT_ERRORS",
    "MissingTopics",
    "ReplayJob",
    "is_missing_topic",
    "is_permanent",
    "record_of",
]

_log: Final = logging.getLogger("agentstream.spool")

#: delivery errors that a retry cannot fix: such messages go to a ``rejected-`` segment
PERMANENT_ERRORS: Final = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.POLICY_VIOLATION,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError._INVALID_ARG,
    }
)


def is_permanent(error: Any) -> bool:
    """Whether a delivery error (a ``KafkaError``) is one no retry can fix."""
    return bool(error.code() in PERMANENT_ERRORS)


#: delivery errors saying the topic does not exist (auto-creation is off): retried later
MISSING_TOPIC_ERRORS: Final = frozenset(
    {KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART}
)


def is_missing_topic(error: Any) -> bool:
    """Whether a delivery error says the topic does not exist."""
    return bool(error.code() in MISSING_TOPIC_ERRORS)


class MissingTopics:
    """Topics the broker said do not exist: replays wait for them; each is told once."""

    def __init__(self, bootstrap: str, spool_dir: Path) -> None:
        self._bootstrap = bootstrap
        self._spool_dir = spool_dir
        self._missing: set[str] = set()
        self._told: set[str] = set()

    def add(self, topic: str) -> None:
        self._missing.add(topic)
        if topic in self._told:
            return
        self._told.add(topic)
        logging.getLogger("agentstream.emitter").error(
            "agentstream: topic %r does not exist on %s (topic auto-creation is off); its events "
            "are kept in the spool (%s) and sent once it exists: run `agentstream topics create`",
            topic,
            self._bootstrap,
            self._spool_dir,
        )

    def still_missing(self, existing: Iterable[str]) -> bool:
        """Forget the topics now in ``existing``; whether some are still missing."""
        self._missing.difference_update(existing)
        return bool(self._missing)


def record_of(message: Any) -> SpoolRecord:
    """The spool record of a confluent-kafka message (from a delivery report)."""
    headers = message.headers()
    return SpoolRecord(
        message.topic(),
        message.key(),
        message.value() or b"",
        tuple((name, value or b"") for name, value in headers) if headers else (),
    )


class _Segment:
    """One claimed segment being replayed."""

    __slots__ = (
        "bad",
        "claimed",
        "data",
        "failed",
        "next",
        "outstanding",
        "records",
        "rejected",
        "torn",
    )

    def __init__(self, claimed: ClaimedSegment) -> None:
        self.claimed = claimed
        scan, data = claimed.scan()
        self.records = scan.records
        self.bad = scan.bad
        self.torn = scan.damaged
        # kept only to copy the bad bytes to the quarantine
        self.data = data if scan.bad else b""
        self.next = 0
        self.outstanding = 0
        self.failed: list[SpoolRecord] = []
        self.rejected: list[SpoolRecord] = []

    @property
    def finished(self) -> bool:
        return self.next >= len(self.records) and self.outstanding == 0


class ReplayJob:
    """Replays claimed segments through a producer, deleting each when it is done.

    Drive it with :meth:`pump` (produce what fits), the producer's ``poll`` (delivery
    reports) and :meth:`reap` (spool failures again, delete finished segments),
    all from one thread. ``on_delivered(n)`` is told about delivered messages.
    """

    def __init__(
        self,
        spool: Spool,
        segments: list[ClaimedSegment],
        *,
        on_delivered: Callable[[int], None] | None = None,
    ) -> None:
        self._spool = spool
        self._pending: deque[_Segment] = deque()
        self._on_delivered = on_delivered
        #: how many segments this job took
        self.segments = len(segments)
        self.total = 0
        self.delivered = 0
        self.failed = 0
        self.rejected = 0
        self.torn_tails = 0
        #: unreadable bytes / frames found (and quarantined once the segment is settled)
        self.bad_bytes = 0
        self.bad_frames = 0
        self.on_error: Callable[[Any, SpoolRecord], None] | None = None
        for claimed in segments:
            segment = _Segment(claimed)
            self.total += len(segment.records)
            self.torn_tails += int(segment.torn)
            if segment.torn:
                size = sum(r.size for r in segment.bad)
                frames = sum(r.frames for r in segment.bad)
                self.bad_bytes += size
                self.bad_frames += frames
                _log.error(
                    "agentstream: spool segment %s has %d unreadable byte(s) (~%d frame(s): "
                    "corruption or a crash mid-write); replaying its %d readable records, "
                    "the bad bytes go to %s/",
                    claimed.path.name,
                    size,
                    frames,
                    len(segment.records),
                    QUARANTINE,
                )
            self._pending.append(segment)

    @property
    def done(self) -> bool:
        """Every segment was finished and deleted (or given back)."""
        return not self._pending

    @property
    def outstanding(self) -> int:
        """Records produced whose delivery report has not come yet."""
        return sum(s.outstanding for s in self._pending)

    def pump(self, producer: Any, limit: int = 10_000) -> int:
        """Produce up to ``limit`` records; stops early when the producer's queue is full."""
        produced = 0
        for segment in self._pending:
            records = segment.records
            while segment.next < len(records) and produced < limit:
                record = records[segment.next]
                try:
                    producer.produce(
                        record.topic,
                        record.value,
                        record.key,
                        headers=list(record.headers) or None,
                        on_delivery=self._reporter(segment),
                    )
                except BufferError:
                    return produced
                segment.next += 1
                segment.outstanding += 1
                produced += 1
            if produced >= limit:
                break
        return produced

    def _reporter(self, segment: _Segment) -> Callable[[Any, Any], None]:
        def report(error: Any, message: Any) -> None:
            segment.outstanding -= 1
            if error is None:
                self.delivered += 1
                if self._on_delivered is not None:
                    self._on_delivered(1)
            elif is_permanent(error):
                self.rejected += 1
                segment.rejected.append(record_of(message))
                _log.error(
                    "agentstream: the broker refused a spooled message for good (%s); kept in "
                    "a rejected- spool segment",
                    error.str(),
                )
            else:
                self.failed += 1
                record = record_of(message)
                segment.failed.append(record)
                if self.on_error is not None:
                    self.on_error(error, record)

        return report

    def reap(self) -> int:
        """Spool failed records again and delete finished segments; the number deleted."""
        deleted = 0
        while self._pending and self._pending[0].finished:
            segment = self._pending.popleft()
            if not self._settle(segment, []):
                continue
            deleted += 1
        return deleted

    def _settle(self, segment: _Segment, unsent: list[SpoolRecord]) -> bool:
        """Write what is left of ``segment`` to the spool, then delete it; False: kept."""
        path = segment.claimed.path
        try:
            self._spool.quarantine(path, segment.data, segment.bad)
            self._spool.write_replacement(path, segment.failed + unsent)
            self._spool.write_replacement(path, segment.rejected, rejected=True)
        except DeliveryError as exc:
            _log.critical(
                "agentstream: %s; segment %s is kept and will be replayed again",
                exc,
                segment.claimed.path.name,
            )
            segment.claimed.release()
            return False
        segment.claimed.delete()
        return True

    def abandon(self) -> None:
        """Stop: spool what was not produced yet and delete, or give back segments in doubt.

        A segment with messages still in flight (no delivery report yet) is given
        back whole, to be replayed again later.
        """
        while self._pending:
            segment = self._pending.popleft()
            if segment.outstanding:
                segment.claimed.release()
                continue
            self._settle(segment, segment.records[segment.next :])
