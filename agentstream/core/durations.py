"""Durations written by people: ``90``, ``"90s"``, ``"500ms"``, ``"15m"``, ``"24h"``,
``"7d"``, ``"2w"``, read the same way by every command, rule file and setting."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["DURATION_HINT", "parse_duration"]

DURATION_HINT: Final = "a duration such as 500ms, 90s, 15m, 24h, 7d or 2w"
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_S: Final[dict[str | None, float]] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    None: 1.0,
}


def parse_duration(value: object) -> float:
    """Seconds of ``value``: a number of seconds, or a number with a unit (ms s m h d w).

    Raises :class:`ValueError` saying what is expected; callers name their option.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be {DURATION_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        raise ValueError(f"must be {DURATION_HINT}, not {value!r}")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds
