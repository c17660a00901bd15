"""The engine's partition clocks, record by record (pure logic: no broker).

Each expectation is worked out by hand from the module doc of
``processors.engine._watermarks``: an index clock is the oldest newest-event time over
its topics with records left, the newest of them once all are read; the low watermark
is the oldest index clock of the indexes with records left or recent input.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentstream.processors.engine._watermarks import PartitionClocks


@dataclass(frozen=True)
class _Message:
    _topic: str
    _partition: int

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition


Lags = dict[tuple[str, int], int | None]


def _batch(*keys: tuple[str, int]) -> list[_Message]:
    return [_Message(t, p) for t, p in keys]


def test_an_index_clock_holds_at_its_slowest_topic_until_that_topic_is_read() -> None:
    clocks = PartitionClocks()
    # after the batch: nothing left anywhere; the batch holds 2 records of a/0, 1 of b/0
    lags: Lags = {("a", 0): 0, ("b", 0): 0, ("a", 1): 0, ("b", 1): 0}
    clocks.refresh(lags, 100.0, _batch(("a", 0), ("a", 0), ("b", 0)))
    clocks.consumed("a", 0)
    clocks.observe("a", 0, 5_000, 100.0)
    # b/0 still has a record to read and has never been read from: index 0 holds
    assert 0 not in clocks.index
    clocks.consumed("a", 0)
    clocks.observe("a", 0, 9_000, 100.0)
    assert 0 not in clocks.index
    clocks.consumed("b", 0)
    clocks.observe("b", 0, 7_000, 100.0)
    # everything of index 0 read: the newest of its topics
    assert clocks.index[0] == 9_000
    # index 1 has had no input: it neither holds nor sets the low watermark
    assert clocks.low_mark(100.0, 10.0) == 9_000


def test_the_low_watermark_waits_for_an_index_with_records_left() -> None:
    clocks = PartitionClocks()
    lags: Lags = {("a", 0): 0, ("a", 1): 0}
    clocks.refresh(lags, 0.0, _batch(("a", 0), ("a", 1), ("a", 1)))
    clocks.consumed("a", 0)
    clocks.observe("a", 0, 50, 0.0)
    # index 1 has records left and no clock yet: the low watermark holds (None)
    assert clocks.low_mark(0.0, 10.0) is None
    clocks.consumed("a", 1)
    clocks.observe("a", 1, 20, 0.0)
    assert clocks.low_mark(0.0, 10.0) == 20
    clocks.consumed("a", 1)
    clocks.observe("a", 1, 70, 0.0)
    assert clocks.low_mark(0.0, 10.0) == 50
    # a new batch (new lag maps): index 0 has records left again, index 1 is quiet
    again: Lags = {("a", 0): 3, ("a", 1): 0}
    clocks.refresh(again, 30.0)
    assert clocks.low_mark(30.0, 10.0) == 50
    clocks.consumed("a", 0)
    clocks.observe("a", 0, 90, 30.0)
    # index 1 is read to its end and quiet for longer than idle_after: only index 0 counts
    assert clocks.low_mark(30.0, 10.0) == 90


def test_a_rebalance_forgets_what_is_left_to_read() -> None:
    clocks = PartitionClocks()
    first: Lags = {("a", 0): 2}
    clocks.refresh(first, 0.0)
    assert clocks.assigned == {0}
    clocks.unassigned()
    assert clocks.assigned == set()
    clocks.consumed("a", 0)  # a record of a partition no longer known: no error, no effect
    assert clocks.lag is None
    after: Lags = {("a", 0): 0, ("a", 3): 1}
    clocks.refresh(after, 1.0)
    assert clocks.assigned == {0, 3}
    assert clocks.lag == 1


def test_an_unknown_end_holds_the_clock_until_the_lags_show_it_and_the_move_is_reported() -> None:
    clocks = PartitionClocks()
    # b/0's end is not known yet (nothing fetched from it): it may hold records
    clocks.refresh({("a", 0): 0, ("b", 0): None}, 100.0, _batch(("a", 0)))
    clocks.consumed("a", 0)
    clocks.observe("a", 0, 7_000, 100.0)
    assert 0 not in clocks.index
    assert clocks.take_moved() == set()
    # the next fetch shows b/0 empty: without any record, index 0 takes a/0's newest
    clocks.refresh({("a", 0): 0, ("b", 0): 0}, 101.0)
    assert clocks.index[0] == 7_000
    assert clocks.take_moved() == {0}  # due in the changelog though no record was read
    assert clocks.take_moved() == set()
