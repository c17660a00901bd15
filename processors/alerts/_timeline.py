"""The event-time timeline of one rule on one scope: windows in, OK/PENDING/FIRING out.

The timeline is a pure function of the rule and the window values: the state machine
(:func:`step`) runs over the windows in event-time order, whatever order they (and their
corrections) arrived in. Per window of the rule's resolution:

* the metric's value and sample count come from the rollup; a window with fewer than
  ``min_samples`` samples (or no value, e.g. a ratio of zero calls) is *insufficient*: it
  never breaches;
* a breaching window extends the streak when it directly follows the previous window
  (``start`` == previous ``end``), else starts a new one; at ``for`` consecutive breaching
  windows the timeline goes FIRING, unless its last FIRING began less than ``cooldown``
  (event time) earlier: then it stays PENDING and fires once the cooldown has passed if it
  still breaches;
* while FIRING, ``resolve_for`` consecutive non-breaching windows (insufficient ones
  included) end the episode (RESOLVED).

:class:`Machine` is where the timeline stands after a window; :class:`Window` is what the
timeline keeps of a window (its value and sample count), JSON-safe through
:func:`window_to_json` / :func:`window_from_json`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, get_args

from agentstream.processors.alerts._rules import Rule
from agentstream.schemas import Rollup

__all__ = [
    "Episode",
    "Machine",
    "Status",
    "Step",
    "Transition",
    "Window",
    "episodes",
    "machine_from_json",
    "machine_to_json",
    "run",
    "step",
    "sufficient",
    "window_from_json",
    "window_of",
    "window_to_json",
]

Status = Literal["OK", "PENDING", "FIRING", "RESOLVED"]
Transition = Literal["FIRING", "RESOLVED"]
STATUSES: tuple[str, ...] = get_args(Status)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Window:
    """One window of the rule's resolution as the timeline sees it."""

    start: datetime
    end: datetime
    #: the metric's value (None: not defined for this window)
    value: float | None
    samples: int


def window_of(rule: Rule, rollup: Rollup) -> Window:
    """The :class:`Window` ``rule`` reads from ``rollup``."""
    metric = rule.metric_info
    return Window(
        rollup.window_start, rollup.window_end, metric.value(rollup), metric.samples(rollup)
    )


@dataclass(frozen=True, slots=True)
class Machine:
    """Where the timeline stands after a window."""

    status: Status = "OK"
    #: consecutive breaching windows so far
    streak: int = 0
    #: consecutive non-breaching windows while FIRING
    clear_streak: int = 0
    #: end of the last window stepped over
    last_window_end: datetime | None = None
    last_value: float | None = None
    #: window end where the current (or last) FIRING episode began; the cooldown counts from it
    fired_window_end: datetime | None = None

    @property
    def idle(self) -> bool:
        """Nothing pending and nothing ever fired."""
        return self.status == "OK" and self.streak == 0 and self.fired_window_end is None


class Step(NamedTuple):
    """One window of the timeline: the window, the machine after it, what changed."""

    window: Window
    machine: Machine
    transition: Transition | None


def sufficient(rule: Rule, window: Window) -> bool:
    """True when the window holds a value from at least ``min_samples`` samples."""
    return window.value is not None and window.samples >= rule.min_samples


def step(rule: Rule, m: Machine, w: Window) -> Step:
    """Advance the machine ``m`` over the window ``w`` (the next one in event time).

    (Machines are built directly, not with ``dataclasses.replace``: this is the hot path,
    run over every kept window on each rollup.)"""
    breach = w.value is not None and w.samples >= rule.min_samples and rule.breached(w.value)
    follows = m.last_window_end == w.start
    end, value, fired = w.end, w.value, m.fired_window_end
    if breach:
        streak = m.streak + 1 if follows and m.streak > 0 else 1
        if m.status == "FIRING":
            return Step(w, Machine("FIRING", streak, 0, end, value, fired), None)
        cooled = fired is None or end - fired >= timedelta(seconds=rule.cooldown_s)
        if streak < rule.for_windows or not cooled:
            return Step(w, Machine("PENDING", streak, m.clear_streak, end, value, fired), None)
        return Step(w, Machine("FIRING", streak, 0, end, value, end), "FIRING")
    if m.status != "FIRING":
        status: Status = "RESOLVED" if m.status == "RESOLVED" else "OK"
        return Step(w, Machine(status, 0, 0, end, value, fired), None)
    clear_streak = m.clear_streak + 1 if follows else 1
    if clear_streak < rule.resolve_for:
        return Step(w, Machine("FIRING", 0, clear_streak, end, value, fired), None)
    return Step(w, Machine("RESOLVED", 0, 0, end, value, fired), "RESOLVED")


def run(rule: Rule, base: Machine, windows: Iterable[Window]) -> list[Step]:
    """The timeline from ``base`` over ``windows`` (in event-time order)."""
    steps: list[Step] = []
    m = base
    for w in windows:
        s = step(rule, m, w)
        steps.append(s)
        m = s.machine
    return steps


@dataclass(frozen=True, slots=True)
class Episode:
    """A FIRING episode of the timeline."""

    #: window end where it began (may be before the first step: an episode of the base)
    start: datetime
    #: its steps from the one that fired (or the first step) while FIRING
    steps: tuple[Step, ...]
    #: the step that resolved it (None: still FIRING after the last step)
    resolved: Step | None


def episodes(base: Machine, steps: Sequence[Step]) -> list[Episode]:
    """The FIRING episodes of a timeline, in event-time order."""
    out: list[Episode] = []
    start = base.fired_window_end if base.status == "FIRING" else None
    current: list[Step] = []
    for s in steps:
        if s.transition == "FIRING":
            start, current = s.window.end, [s]
        elif s.transition == "RESOLVED" and start is not None:
            out.append(Episode(start, tuple(current), s))
            start, current = None, []
        elif start is not None:
            current.append(s)
    if start is not None:
        out.append(Episode(start, tuple(current), None))
    return out


# -- JSON ------------------------------------------------------------------------------------


def _us(value: datetime) -> int:
    return (value - _EPOCH) // _US


def _from_us(value: Any, key: str) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key} must be an integer (µs since the epoch)")
    return _EPOCH + value * _US


def window_to_json(w: Window) -> list[Any]:
    """``[start µs, end µs, value, samples]``."""
    return [_us(w.start), _us(w.end), w.value, w.samples]


def window_from_json(data: Any) -> Window:
    """The window :func:`window_to_json` wrote; ``TypeError``/``ValueError`` name the field."""
    if not isinstance(data, list) or len(data) != 4:
        raise TypeError("windows[] must be [start, end, value, samples]")
    start, end = _from_us(data[0], "windows[].start"), _from_us(data[1], "windows[].end")
    value = number(data[2], "windows[].value")
    return Window(start, end, value, count(data[3], "windows[].samples"))


def ts(value: datetime | None) -> str | None:
    """ISO-8601 text in UTC, or None."""
    return None if value is None else value.astimezone(UTC).isoformat()


def text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be text")
    return value


def count(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{key} must be a non-negative integer")
    return value


def number(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{key} must be a number")
    return float(value)


def time(data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be ISO-8601 text")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{key} must carry a timezone")
    return parsed.astimezone(UTC)


def machine_to_json(m: Machine) -> dict[str, Any]:
    """A JSON-safe dict of the machine."""
    return {
        "status": m.status,
        "streak": m.streak,
        "clear_streak": m.clear_streak,
        "last_window_end": ts(m.last_window_end),
        "last_value": m.last_value,
        "fired_window_end": ts(m.fired_window_end),
    }


def machine_from_json(data: Mapping[str, Any]) -> Machine:
    """The machine :func:`machine_to_json` wrote."""
    status = data["status"]
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return Machine(
        status=status,
        streak=count(data["streak"], "streak"),
        clear_streak=count(data["clear_streak"], "clear_streak"),
        last_window_end=time(data, "last_window_end"),
        last_value=number(data.get("last_value"), "last_value"),
        fired_window_end=time(data, "fired_window_end"),
    )
