"""Clock sanity: the one rule, shared by the processors and the sink, for event times that no
producer's clock could have given.

An event dated beyond ``now + clock.max_future_skew_s`` (a producer whose clock is wrong, a
year 9999 typo) or before ``now - clock.max_past_s`` (an epoch-zero default, a replay far
older than anything the tables keep) is refused: the processors dead-letter it to
``agent.invalid`` (``error_type`` :data:`ERROR_TYPE`) and it never moves a watermark or a
clock; the sink stores it only in ``invalid_events``. ``now`` is the reader's wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from agentstream.core.config import ClockSettings, Settings
from agentstream.core.errors import EventTimeOutOfRange

__all__ = ["ERROR_TYPE", "check_event_time", "check_event_time_us", "plausible_event_times"]

#: ``error_type`` of the dead letter
ERROR_TYPE: Final = EventTimeOutOfRange.__name__
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _clock(settings: Settings | ClockSettings) -> ClockSettings:
    return settings.clock if isinstance(settings, Settings) else settings


def check_event_time_us(
    event_us: int, now_us: int, settings: Settings | ClockSettings
) -> str | None:
    """:func:`check_event_time` on integer microseconds since the epoch (the processors')."""
    clock = settings.clock if type(settings) is Settings else _clock(settings)
    ahead = event_us - now_us
    if ahead > clock.max_future_skew_s * 1_000_000:
        return (
            f"event time is {ahead / 1e6:.0f} s ahead of the clock "
            f"(clock.max_future_skew_s is {clock.max_future_skew_s:g})"
        )
    behind = now_us - event_us
    if behind > clock.max_past_s * 1_000_000:
        return (
            f"event time is {behind / 86_400e6:.1f} days behind the clock "
            f"(clock.max_past_s is {clock.max_past_s:g})"
        )
    return None


def check_event_time(
    event_time: datetime, now: datetime, settings: Settings | ClockSettings
) -> str | None:
    """Why ``event_time`` is refused at wall time ``now`` (None: it is plausible).

    Both must be timezone-aware. The reason names the offset and the setting, e.g.
    ``event time is 250000000000 s ahead of the clock (clock.max_future_skew_s is 300)``.
    """
    return check_event_time_us(
        (event_time - _EPOCH) // _MICROSECOND,
        (now - _EPOCH) // _MICROSECOND,
        settings,
    )


def plausible_event_times(
    now: datetime, settings: Settings | ClockSettings
) -> tuple[datetime, datetime]:
    """The event times :func:`check_event_time` accepts at wall time ``now``, as an inclusive
    ``(earliest, latest)`` pair, rounded inwards to whole microseconds.

    For a reader checking many records against one ``now`` (the sink, per consumed batch):
    two datetime comparisons a record, and :func:`check_event_time` (for its reason) only
    for a time outside the pair.
    """
    clock = _clock(settings)
    return (
        _shifted(now, -clock.max_past_s, datetime.min),
        _shifted(now, clock.max_future_skew_s, datetime.max),
    )


def _shifted(now: datetime, seconds: float, limit: datetime) -> datetime:
    """``now`` moved by ``seconds`` (towards zero to whole microseconds); ``limit`` (UTC)
    when that is past what a datetime holds (a backfill's ``max_past_s`` of 1e12, ``inf``)."""
    try:
        return now + timedelta(microseconds=int(seconds * 1_000_000))
    except (OverflowError, ValueError):
        return limit.replace(tzinfo=UTC)
