"""ReplayJob bookkeeping: a segment goes only once every record is delivered or spooled again.

The producer here is a stand-in that holds produced messages until the test
reports on them (real ``KafkaError`` values), so every ordering can be played out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from agentstream.emitter._replay import ReplayJob, is_permanent
from agentstream.emitter._spool import Spool, SpoolRecord


class _Message:
    def __init__(self, record: SpoolRecord) -> None:
        self._record = record

    def topic(self) -> str:
        return self._record.topic

    def key(self) -> bytes | None:
        return self._record.key

    def value(self) -> bytes:
        return self._record.value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return list(self._record.headers) or None


class _Producer:
    """Accepts up to ``room`` messages; the test answers them with :meth:`report`."""

    def __init__(self, room: int = 1000) -> None:
        self.room = room
        self.waiting: list[tuple[SpoolRecord, Callable[[Any, Any], None]]] = []
        self.produced: list[SpoolRecord] = []

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        *,
        headers: list[tuple[str, bytes]] | None,
        on_delivery: Callable[[Any, Any], None],
    ) -> None:
        if len(self.waiting) >= self.room:
            raise BufferError("queue full")
        record = SpoolRecord(topic, key, value, tuple(headers or ()))
        self.waiting.append((record, on_delivery))
        self.produced.append(record)

    def report(self, error: KafkaError | None = None, count: int | None = None) -> None:
        batch = self.waiting[:count] if count is not None else list(self.waiting)
        del self.waiting[: len(batch)]
        for record, callback in batch:
            callback(error, _Message(record))


def _records(n: int, start: int = 0) -> list[SpoolRecord]:
    return [SpoolRecord("t", f"k{i}".encode(), f"v{i}".encode()) for i in range(start, start + n)]


def _spool_with(tmp_path: Path, *batches: list[SpoolRecord]) -> Spool:
    spool = Spool(tmp_path)
    for batch in batches:
        spool.append(batch)
        spool.rotate()
    return spool


def _all_records(spool: Spool) -> list[SpoolRecord]:
    return [r for path in spool.segment_paths() for r in Spool.read(path)]


def test_segments_are_deleted_as_their_records_are_delivered(tmp_path: Path) -> None:
    first, second = _records(3), _records(2, start=3)
    spool = _spool_with(tmp_path, first, second)
    delivered: list[int] = []
    job = ReplayJob(spool, spool.claim(), on_delivered=delivered.append)
    producer = _Producer()
    assert job.pump(producer) == 5
    assert producer.produced == first + second  # in spool order
    producer.report(count=2)
    assert job.reap() == 0  # the first segment still has a record in flight
    assert len(spool.segment_paths()) == 2
    producer.report(count=1)
    assert job.reap() == 1
    assert _all_records(spool) == second
    producer.report()
    assert job.reap() == 1
    assert job.done
    assert (job.total, job.delivered, sum(delivered)) == (5, 5, 5)
    assert spool.segment_paths() == []


def test_a_full_queue_stops_the_pump_without_losing_its_place(tmp_path: Path) -> None:
    records = _records(7)
    spool = _spool_with(tmp_path, records)
    job = ReplayJob(spool, spool.claim())
    producer = _Producer(room=3)
    assert job.pump(producer) == 3
    assert job.pump(producer) == 0
    producer.report()
    assert job.pump(producer, limit=2) == 2
    producer.report()
    assert job.pump(producer) == 2
    producer.report()
    job.reap()
    assert job.done
    assert producer.produced == records  # each once, in order


def test_failures_are_spooled_again_before_the_segment_goes(tmp_path: Path) -> None:
    records = _records(4)
    spool = _spool_with(tmp_path, records)
    job = ReplayJob(spool, spool.claim())
    producer = _Producer()
    job.pump(producer)
    producer.report(None, count=1)
    producer.report(KafkaError(KafkaError._MSG_TIMED_OUT), count=2)  # broker away again
    producer.report(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))  # never going to fit
    assert job.reap() == 1
    assert (job.delivered, job.failed, job.rejected) == (1, 2, 1)
    infos = spool.infos()
    assert sorted((i.state, i.records) for i in infos) == [("rejected", 1), ("waiting", 2)]
    waiting = [i.path for i in infos if i.state == "waiting"]
    assert Spool.read(waiting[0]) == records[1:3]


def test_what_fails_again_sorts_before_segments_spooled_meanwhile(tmp_path: Path) -> None:
    old, new = _records(3), _records(2, start=3)
    spool = _spool_with(tmp_path, old)
    job = ReplayJob(spool, spool.claim())
    producer = _Producer()
    job.pump(producer)
    spool.append(new)  # the agent's later events, spooled while the replay runs
    spool.rotate()
    producer.report(KafkaError(KafkaError._MSG_TIMED_OUT))  # all of the old ones fail again
    assert job.reap() == 1
    # replayed next time: the old events first, then the newer ones
    assert _all_records(spool) == old + new


def test_abandon_spools_what_was_not_sent_and_keeps_what_is_in_doubt(tmp_path: Path) -> None:
    done, in_doubt = _records(4), _records(3, start=4)
    spool = _spool_with(tmp_path, done, in_doubt)
    claimed = spool.claim()
    job = ReplayJob(spool, claimed)
    producer = _Producer(room=5)
    job.pump(producer)  # all of the first segment, 1 of the second
    producer.report(count=4)
    job.reap()
    assert job.outstanding == 1
    job.abandon()  # the second segment has a message in flight: given back whole
    assert job.done
    assert [i.state for i in spool.infos()] == ["waiting"]
    assert _all_records(spool) == in_doubt
    # a segment with nothing in flight: its unsent records are spooled, then it goes
    spool2 = _spool_with(tmp_path / "two", _records(5))
    job2 = ReplayJob(spool2, spool2.claim())
    producer2 = _Producer(room=2)
    job2.pump(producer2)
    producer2.report()
    job2.abandon()
    assert _all_records(spool2) == _records(5)[2:]


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        (KafkaError._MSG_TIMED_OUT, False),
        (KafkaError._TRANSPORT, False),
        (KafkaError._PURGE_QUEUE, False),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, False),
        (KafkaError.MSG_SIZE_TOO_LARGE, True),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, True),
    ],
)
def test_which_delivery_errors_are_permanent(code: int, permanent: bool) -> None:
    assert is_permanent(KafkaError(code)) is permanent
