"""Which rollout record is current: ONE rule for the judge and ``rollout status``.

A rollout's states come from two clocks: the judge stamps ``updated_at`` with event time,
a manual rollback with wall time. So the time alone cannot order them; the rule is, per
agent, the highest of

1. ``created_at`` — a newer rollout replaces an older one;
2. the status's rank — ACTIVE < COMPLETED < ROLLED_BACK = ABORTED: a stopped rollout stays
   stopped (a manual abort wins over a PROMOTE the judge decided later in event time);
3. ``stage_index`` — stages only move forward;
4. ``updated_at``;
5. the offset (the record read last wins a tie).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from agentstream.schemas import Rollout

__all__ = ["latest", "supersedes"]

_RANK: Final = {"ACTIVE": 0, "COMPLETED": 1, "ROLLED_BACK": 2, "ABORTED": 2}


def _key(r: Rollout) -> tuple[datetime, int, int, datetime]:
    return r.created_at, _RANK[r.status], r.stage_index, r.updated_at


def supersedes(new: Rollout, old: Rollout) -> bool:
    """True when ``new``, read after ``old`` for the same agent, is the current record."""
    return _key(new) >= _key(old)


def latest(records: Iterable[Rollout]) -> dict[str, Rollout]:
    """The current record per agent of ``records`` given in offset order."""
    current: dict[str, Rollout] = {}
    for r in records:
        known = current.get(r.agent_id)
        if known is None or supersedes(r, known):
            current[r.agent_id] = r
    return current
