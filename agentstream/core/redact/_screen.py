"""One screen over a whole column of texts: which of them may hold something to redact.

The per-value screen (``_may_hold``) costs one to three microseconds a value: fine
for one event, most of the sink's budget for a batch of thousands. Here the column
becomes one Arrow array and a single RE2 pattern (pyarrow's
``match_substring_regex``: one automaton pass over the bytes, whatever the number
of needles) marks the values holding any needle or a long digit run.

The needles are every substring ``_may_hold`` tests, each on its own (without the
``-``, ``_`` or ``:``/``=`` that gate some of them there), matched case-blind, and
the digit run is ``_may_hold``'s own pattern: on ASCII text the two screens read
the same characters, so every value ``_may_hold`` passes is a candidate (a
candidate that holds nothing costs the precise pass its own screen). Values with
other characters (whose ``lower()`` or ``\\d`` differ from RE2's) and installs
without pyarrow go through ``_may_hold`` one by one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache
from typing import Final

__all__ = ["SCREEN_NEEDLES", "candidates"]

#: every substring ``_may_hold`` looks for (lower case), without the gates of some
SCREEN_NEEDLES: Final = (
    "@",
    "://",
    "key",
    "token",
    "secret",
    "pass",
    "auth",
    "bearer",
    "eyj",
    "aiza",
    "akia",
    "asia",
    "aws",
    "sk-",
    "-----",
    "xox",
    "xapp",
    "glpat",
    "\uff20",
    "\ufe6b",
    "_live_",
    "_test_",
    "whsec_",
    "gh",
    "npm_",
    "hf_",
    "pw",
    "cred",
    "session",
    "cookie",
    "cv",
    "pin",
    "otp",
    "sig",
)


@cache
def _pattern(digits: str) -> str:
    """The RE2 pattern of the ASCII needles (case-blind) or a digit run."""
    needles = "|".join(re.escape(n) for n in SCREEN_NEEDLES if n.isascii())
    return f"(?i:{needles})|{digits}"


def _kept(value: str | None, may_hold: Callable[[str], bool]) -> bool:
    return bool(value) and isinstance(value, str) and may_hold(value)


def candidates(
    values: Sequence[str | None], digits: str, may_hold: Callable[[str], bool]
) -> list[int]:
    """Indices (ascending) of ``values`` that may hold something to redact (``None``
    and empty values never do).

    ``digits`` is the per-value screen's digit-run pattern (its ASCII reading must be
    RE2's), ``may_hold`` the per-value screen.
    """
    if not values:
        return []
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        array = pa.array(values, pa.string())
    except (ImportError, ValueError, TypeError, UnicodeError):  # no pyarrow, a lone surrogate
        return [i for i, value in enumerate(values) if _kept(value, may_hold)]
    hits = pc.match_substring_regex(array, pattern=_pattern(digits))
    ascii_only = pc.string_is_ascii(array)
    found: list[int] = pc.indices_nonzero(pc.and_(hits, ascii_only)).to_pylist()
    if pc.all(ascii_only).as_py():
        return found
    others = pc.indices_nonzero(pc.invert(ascii_only)).to_pylist()
    found.extend(i for i in others if _kept(values[i], may_hold))
    return sorted(found)
