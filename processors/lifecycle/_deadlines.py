"""Finding overdue runs cheaply: a deadline index and the per-partition timeout tracker.

The run states live in a table keyed by ``run_id``; scanning it on every timer
tick would cost O(runs). :class:`DeadlineIndex` keeps ``run_id → deadline`` in a
min-heap with lazy deletion: updating a deadline pushes a new heap entry and
leaves the old one to be skipped when it surfaces, so set and pop are O(log n)
and the earliest deadline is at hand.

The index is derived data: it is rebuilt from the table's values
(:meth:`TimeoutTracker.rebuild`) when a partition is assigned, so it needs no
changelog of its own (:meth:`DeadlineIndex.to_json` exists for checkpoints and tests).

:class:`TimeoutTracker` is one partition's index plus its :class:`EventClock`;
:meth:`TimeoutTracker.sweep` is the whole timer step: the runs whose deadline plus
``timeout_grace_s`` the clock has passed are failed (TIMEOUT) or, when already
finished and past their retention, reported for deletion.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from agentstream.core.config import LifecycleSettings
from agentstream.processors._clock import EventClock, EventClockState, seconds_to_us
from agentstream.processors.lifecycle._machine import (
    TERMINAL_STATES,
    Accepted,
    RunState,
    expired,
    overdue,
    timer_due,
)

__all__ = ["DeadlineIndex", "Sweep", "TimeoutTracker", "TrackerState"]


class DeadlineIndex:
    """``run_id → deadline`` (µs) with the earliest deadlines popped in O(log n)."""

    __slots__ = ("_current", "_heap")

    def __init__(self, deadlines: Iterable[tuple[str, int]] = ()) -> None:
        self._current: dict[str, int] = dict(deadlines)
        self._heap: list[tuple[int, str]] = [(d, r) for r, d in self._current.items()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._current)

    def get(self, run_id: str) -> int | None:
        """The indexed deadline of ``run_id``, if any."""
        return self._current.get(run_id)

    def set(self, run_id: str, deadline: int | None) -> None:
        """Index (or, with None, forget) the deadline of ``run_id``."""
        if deadline is None:
            self._current.pop(run_id, None)
            return
        if self._current.get(run_id) == deadline:
            return
        self._current[run_id] = deadline
        heapq.heappush(self._heap, (deadline, run_id))
        if len(self._heap) > 4 * len(self._current) + 4096:
            self._compact()

    def next_deadline(self) -> int | None:
        """The earliest indexed deadline, None if the index is empty."""
        heap, current = self._heap, self._current
        while heap and current.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, until: int) -> list[tuple[str, int]]:
        """Pop ``(run_id, deadline)`` of every deadline ``<= until``, earliest first."""
        heap, current = self._heap, self._current
        due: list[tuple[str, int]] = []
        while heap and heap[0][0] <= until:
            deadline, run_id = heapq.heappop(heap)
            if current.get(run_id) == deadline:
                del current[run_id]
                due.append((run_id, deadline))
        return due

    def _compact(self) -> None:
        self._heap = [(d, r) for r, d in self._current.items()]
        heapq.heapify(self._heap)

    def to_json(self) -> dict[str, int]:
        """``run_id → deadline`` (the heap is rebuilt from it)."""
        return dict(self._current)

    @classmethod
    def from_json(cls, data: dict[str, int]) -> DeadlineIndex:
        """The index saved by :meth:`to_json`."""
        return cls(data.items())


class TrackerState(TypedDict):
    """JSON-able state of a :class:`TimeoutTracker`."""

    clock: EventClockState
    deadlines: dict[str, int]
    #: the deadlines of the live runs (absent in an older checkpoint)
    live: NotRequired[dict[str, int]]


@dataclass(slots=True)
class Sweep:
    """One timer step: publish and store each timeout, delete each expired run."""

    now_us: int
    timeouts: list[Accepted] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)


class TimeoutTracker:
    """The timers of one partition's runs: deadline index + event clock.

    The shell calls :meth:`observe` for every event it reads (transitions and
    tool calls), :meth:`track` after every state it stores, and :meth:`sweep`
    every ``timer_interval_s`` of wall time.
    """

    __slots__ = ("_clock", "_grace", "_index", "_live", "_settings")

    def __init__(self, settings: LifecycleSettings, state: TrackerState | None = None) -> None:
        self._settings = settings
        self._grace = seconds_to_us(settings.timeout_grace_s)
        self._clock = EventClock(settings.idle_after_s, state["clock"] if state else None)
        self._index = DeadlineIndex.from_json(state["deadlines"]) if state else DeadlineIndex()
        #: the deadlines of the live (not terminal) runs: a timeout will be dated there
        self._live = DeadlineIndex.from_json(state.get("live", {})) if state else DeadlineIndex()

    @classmethod
    def rebuild(
        cls,
        settings: LifecycleSettings,
        runs: Iterable[RunState],
        clock: EventClockState | None = None,
    ) -> TimeoutTracker:
        """A tracker for the runs of a (newly assigned) partition, from the table's values."""
        tracker = cls(settings)
        if clock is not None:
            tracker._clock = EventClock(settings.idle_after_s, clock)
        runs = list(runs)
        tracker._index = DeadlineIndex((run["run_id"], timer_due(run)) for run in runs)
        tracker._live = DeadlineIndex(
            (run["run_id"], run["deadline"]) for run in runs if run["state"] not in TERMINAL_STATES
        )
        return tracker

    @property
    def index(self) -> DeadlineIndex:
        """The deadline index."""
        return self._index

    def observe(self, event_us: int, wall_us: int) -> None:
        """An event of this partition with event time ``event_us`` was read at ``wall_us``."""
        self._clock.observe(event_us, wall_us)

    def track(self, run: RunState) -> None:
        """Index the deadline of a run state that was just stored (:func:`timer_due`)."""
        run_id = run["run_id"]
        self._index.set(run_id, timer_due(run))
        self._live.set(run_id, None if run["state"] in TERMINAL_STATES else run["deadline"])

    def forget(self, run_id: str) -> None:
        """The run was deleted from the table."""
        self._index.set(run_id, None)
        self._live.set(run_id, None)

    def open_deadline(self) -> int | None:
        """The earliest deadline of a live run (its timeout would be dated there), O(1)
        amortized: what a rollup stage must keep its windows from."""
        return self._live.next_deadline()

    def now(self, wall_us: int) -> int:
        """The partition's clock (event time; the wall clock while idle)."""
        return self._clock.now(wall_us)

    def sweep(self, lookup: Callable[[str], RunState | None], wall_us: int) -> Sweep:
        """Fail every overdue run and list every expired one (``lookup`` reads the table).

        The index is updated for the new (FAILED) states; the caller stores
        ``timeouts[i].state``, publishes ``timeouts[i].transition`` and deletes
        the ``expired`` run ids.
        """
        return self.sweep_at(lookup, self._clock.now(wall_us))

    def sweep_at(self, lookup: Callable[[str], RunState | None], now: int) -> Sweep:
        """:meth:`sweep` at a time the caller decided (the engine's partition clocks)."""
        result = Sweep(now)
        for run_id, _deadline in self._index.pop_due(now - self._grace - 1):
            run = lookup(run_id)
            if run is None:
                self._live.set(run_id, None)
                continue
            if expired(run, now):
                result.expired.append(run_id)
                continue
            timeout = overdue(run, now, self._settings)
            if timeout is not None:
                result.timeouts.append(timeout)
                self.track(timeout.state)
            else:  # not due after all (changed meanwhile): keep watching it
                self.track(run)
        return result

    def to_json(self) -> TrackerState:
        """The state, for a checkpoint (it can also be rebuilt from the table)."""
        return {
            "clock": self._clock.to_json(),
            "deadlines": self._index.to_json(),
            "live": self._live.to_json(),
        }
