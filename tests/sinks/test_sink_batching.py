"""The batching contract, on the ListSink test double with a hand-driven clock."""

from __future__ import annotations

import pytest

from agentstream.core.config import SinkSettings
from agentstream.core.errors import BackPressure, StorageError
from agentstream.sinks import Batch, ListSink, Position


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_sink(**overrides: float) -> tuple[ListSink[str], Clock]:
    values: dict[str, float] = {
        "batch_size": 3,
        "flush_interval_s": 1.0,
        "max_buffered_rows": 10,
        "retry_initial_s": 0.5,
        "retry_max_s": 2.0,
        **overrides,
    }
    clock = Clock()
    settings = SinkSettings.model_validate(values)
    return ListSink(settings, clock=clock), clock


def pos(offset: int, partition: int = 0, topic: str = "t") -> Position:
    return Position(topic, partition, offset)


def test_a_full_batch_is_due_and_written_in_arrival_order() -> None:
    sink, _ = make_sink()
    for i in range(2):
        sink.add("a", f"a{i}", pos(i))
    assert not sink.due()
    assert sink.flush().batches == 0
    sink.add("a", "a2", pos(2))
    assert sink.due()
    report = sink.flush()
    assert report.written == {"a": 3}
    assert sink.written["a"] == ["a0", "a1", "a2"]
    assert sink.buffered == 0


def test_batches_never_exceed_batch_size() -> None:
    sink, _ = make_sink()
    for i in range(7):
        sink.add("a", f"a{i}", pos(i))
    report = sink.flush()
    # two full batches go; the third (1 item, young) waits
    assert [count for _, _, count in sink.batches] == [3, 3]
    assert report.rows == 6
    assert sink.buffered == 1


def test_an_old_batch_is_due_by_time() -> None:
    sink, clock = make_sink()
    sink.add("a", "x", pos(0))
    clock.now += 0.99
    assert not sink.due()
    clock.now += 0.02
    assert sink.due()
    assert sink.flush().written == {"a": 1}


def test_keys_are_batched_separately() -> None:
    sink, _ = make_sink()
    for i in range(3):
        sink.add("a", f"a{i}", pos(i))
    sink.add("b", "b0", pos(3))
    sink.flush()
    assert sink.written == {"a": ["a0", "a1", "a2"]}
    sink.flush(force=True)
    assert sink.written["b"] == ["b0"]


def test_the_token_depends_on_positions_not_on_order() -> None:
    first: Batch[str] = Batch("t", 0.0)
    second: Batch[str] = Batch("t", 5.0)
    for offset in (1, 2, 3):
        first.append(f"x{offset}", pos(offset))
    for offset in (3, 1, 2):
        second.append(f"y{offset}", pos(offset))
    other_key: Batch[str] = Batch("u", 0.0, ["x1", "x2", "x3"], [pos(1), pos(2), pos(3)])
    other_range: Batch[str] = Batch("t", 0.0, ["x1", "x2"], [pos(1), pos(2)])
    token = first.token()
    assert token is not None
    assert token == second.token()
    assert token != other_key.token()
    assert token != other_range.token()
    assert Batch("t", 0.0, ["x"], [None]).token() is None


def test_a_failed_write_keeps_the_batch_and_retries_it_with_the_same_token() -> None:
    sink, clock = make_sink()
    for i in range(3):
        sink.add("a", f"a{i}", pos(i))
    sink.fail_next(2)
    first = sink.flush()
    assert isinstance(first.error, StorageError)
    assert sink.buffered == 3
    assert sink.failing
    assert sink.retry_after() == pytest.approx(0.5)
    # not yet due: nothing is attempted
    assert sink.flush().deferred
    assert len(sink.attempts) == 1
    clock.now += 0.5
    second = sink.flush()
    assert second.error is not None
    # backoff doubles
    assert sink.retry_after() == pytest.approx(1.0)
    clock.now += 1.0
    third = sink.flush()
    assert third.error is None
    assert third.written == {"a": 3}
    assert len(set(sink.attempts)) == 1  # every attempt carried the same token
    assert not sink.failing


def test_backoff_is_capped() -> None:
    sink, clock = make_sink()
    sink.add("a", "x", pos(0))
    clock.now += 1.0
    sink.fail_next(10)
    for _ in range(6):
        sink.flush(force=True)
    assert sink.retry_after() == pytest.approx(2.0)


def test_a_full_buffer_pushes_back_until_a_flush_makes_room() -> None:
    sink, clock = make_sink()
    for i in range(10):
        sink.add("a", f"a{i}", pos(i))
    assert sink.room == 0
    with pytest.raises(BackPressure) as info:
        sink.add("a", "late", pos(10))
    assert info.value.retry_after == pytest.approx(1.0)  # the flush interval
    sink.fail_next()
    sink.flush()
    with pytest.raises(BackPressure) as info:
        sink.add("a", "late", pos(10))
    assert info.value.retry_after == pytest.approx(0.5)  # the pending retry
    assert sink.buffered == 10
    clock.now += 0.5
    assert sink.flush(force=True).rows == 10
    sink.add("a", "late", pos(10))
    assert sink.buffered == 1


def test_refused_items_leave_the_buffer_and_are_reported() -> None:
    sink, _ = make_sink()
    sink.reject(lambda item: "odd" if item.endswith(("1", "3")) else None)
    for i in range(4):
        sink.add("a", f"a{i}", pos(i))
    report = sink.flush(force=True)
    assert sink.written["a"] == ["a0", "a2"]
    assert [(r.item, r.position, r.reason) for r in report.rejected] == [
        ("a1", pos(1), "odd"),
        ("a3", pos(3), "odd"),
    ]
    assert report.written == {"a": 2}
    assert sink.buffered == 0


def test_lowest_buffered_offsets_per_partition() -> None:
    sink, _ = make_sink(batch_size=100)
    sink.add("a", "x", pos(7, partition=0))
    sink.add("b", "y", pos(5, partition=0))
    sink.add("a", "z", pos(9, partition=1))
    sink.add("a", "w", None)
    assert sink.lowest_buffered_offsets() == {("t", 0): 5, ("t", 1): 9}


def test_discard_drops_only_the_revoked_partitions() -> None:
    sink, _ = make_sink(batch_size=100)
    sink.add("a", "p0", pos(1, partition=0))
    sink.add("a", "p1", pos(1, partition=1))
    sink.add("b", "p1b", pos(2, partition=1))
    assert sink.discard([("t", 1)]) == 2
    assert sink.buffered == 1
    sink.flush(force=True)
    assert sink.written == {"a": ["p0"]}


def test_close_writes_everything_and_raises_when_it_cannot() -> None:
    sink, _ = make_sink()
    with sink:
        sink.add("a", "x", pos(0))
    assert sink.setup_called
    assert sink.written == {"a": ["x"]}
    failing, _ = make_sink()
    failing.add("a", "y", pos(0))
    failing.fail_next()
    with pytest.raises(StorageError):
        failing.close()
