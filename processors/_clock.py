"""Event time as integer microseconds, and the clock that drives timers and watermarks.

Every processor state keeps instants as integer microseconds since the Unix
epoch (UTC), like Avro ``timestamp-micros``: exact, JSON-able and cheap to compare.

How event time and the wall clock combine (:class:`EventClock`)
----------------------------------------------------------------
The processors are driven by **event time**: a window closes, and a run times
out, when the stream's own timestamps say so. So a replay or a backlog gives the
same results as live traffic, whatever the wall clock says.

Event time alone stops when traffic stops: the last windows would never close
and a stalled run would never time out on an idle stream. So the clock also
reads the wall clock, but **only while the input is idle**:

    now = max(event_max, wall_now if wall_now - last_event_wall >= idle_after else -inf)

``event_max`` is the largest event time observed; ``last_event_wall`` the wall
time of the last observed event. While events keep arriving (live traffic or a
backlog being read) the wall clock is ignored, so catching up after downtime
cannot fail runs or close windows early: during a catch-up the wall clock is far
ahead of the events being read. Once nothing arrived for ``idle_after`` the
consumer is caught up, event time of the producers is roughly the wall clock,
and the wall clock takes over. Users of the clock subtract their own margin
(rollups: the allowed lateness; lifecycle: the timeout grace) for clock skew
between producers and the worker.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TypedDict

__all__ = ["EventClock", "EventClockState", "from_us", "now_us", "seconds_to_us", "to_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(instant: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch (exact)."""
    return (instant - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """Integer microseconds since the epoch as a UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def seconds_to_us(seconds: float) -> int:
    """A duration in seconds (a setting) as integer microseconds, rounded."""
    return round(seconds * 1_000_000)


def now_us() -> int:
    """The wall clock as integer microseconds (for the engine; cores take it as input):
    the clock ``datetime.now`` reads, without building a datetime."""
    return time.time_ns() // 1_000


class EventClockState(TypedDict):
    """JSON-able state of an :class:`EventClock`."""

    event_max: int | None
    last_wall: int | None


class EventClock:
    """Event time, with the wall clock taking over while the input is idle.

    Deterministic: the wall time is always passed in, never read.
    """

    __slots__ = ("_event_max", "_idle_after", "_last_wall")

    def __init__(self, idle_after_s: float, state: EventClockState | None = None) -> None:
        self._idle_after = seconds_to_us(idle_after_s)
        self._event_max: int | None = state["event_max"] if state else None
        self._last_wall: int | None = state["last_wall"] if state else None

    @property
    def event_max(self) -> int | None:
        """The largest event time observed (µs), None before the first event."""
        return self._event_max

    def observe(self, event_us: int, wall_us: int) -> None:
        """An event with time ``event_us`` arrived at wall time ``wall_us``."""
        if self._event_max is None or event_us > self._event_max:
            self._event_max = event_us
        self._last_wall = wall_us

    def idle(self, wall_us: int) -> bool:
        """True when no event arrived for ``idle_after`` (or none ever did)."""
        return self._last_wall is None or wall_us - self._last_wall >= self._idle_after

    def now(self, wall_us: int) -> int:
        """The current time (µs): event time, or the wall clock while idle (see module doc)."""
        event_max = self._event_max
        if event_max is None:
            return wall_us  # nothing observed yet: idle by definition
        if wall_us > event_max and self.idle(wall_us):
            return wall_us
        return event_max

    def to_json(self) -> EventClockState:
        """The state, for a table or a checkpoint."""
        return {"event_max": self._event_max, "last_wall": self._last_wall}
