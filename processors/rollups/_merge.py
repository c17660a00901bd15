"""Merging finished rollups: partial rollups of one window, or fine windows into a coarse one.

Every figure of a rollup is a sum and the latency sketch merges exactly, so

* the partial rollups that several partitions (workers) emit for the same scope
  and window merge into the rollup of the whole stream, and
* sixty 1 s rollups of a scope merge into its 1 min rollup (what the aggregator
  does internally), e.g. for a query over stored rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from agentstream.processors._clock import to_us
from agentstream.processors.rollups._build import RESOLUTION_US, build_rollup, window_start
from agentstream.processors.rollups._cells import (
    COST_NUSD,
    FIGURES,
    NANO,
    VALUE_NUSD,
    ZERO_LATENCY,
    Cell,
    Scope,
)
from agentstream.processors.rollups._sketch import LatencySketch
from agentstream.schemas import Resolution, Rollup

__all__ = ["merge_rollups"]

_SUMMED = tuple(
    (i, name)
    for i, name in enumerate(FIGURES)
    if name not in ("cost_nusd", "value_nusd", "zero_latency")
)


def merge_rollups(
    parts: Sequence[Rollup],
    resolution: Resolution | None = None,
    computed_at: datetime | None = None,
) -> Rollup:
    """One rollup from ``parts`` of the same scope.

    Without ``resolution`` all parts must cover the same window (partials of one
    window); with it, the result is the ``resolution`` window holding the parts,
    each of which must lie inside it. Raises :class:`ValueError` naming the
    mismatch.
    """
    if not parts:
        raise ValueError("merge_rollups: no rollups to merge")
    first = parts[0]
    scope = Scope(
        first.scope_kind,
        first.scope_key,
        first.tenant_id,
        first.agent_id,
        first.agent_version,
        first.tool,
    )
    res: Resolution = resolution or first.resolution
    start = window_start(to_us(first.window_start), res)
    end = start + RESOLUTION_US[res]
    cell = Cell(scope)
    sketch: LatencySketch | None = None
    for part in parts:
        if (part.scope_kind, part.scope_key) != (scope.kind, scope.key):
            raise ValueError(f"merge_rollups: scope {part.scope_key!r} differs from {scope.key!r}")
        lo, hi = to_us(part.window_start), to_us(part.window_end)
        if resolution is None and (lo, hi) != (start, end):
            raise ValueError(
                f"merge_rollups: window {part.window_start.isoformat()} differs from "
                f"{first.window_start.isoformat()} (pass a resolution to merge windows)"
            )
        if not start <= lo < hi <= end:
            raise ValueError(
                f"merge_rollups: window {part.window_start.isoformat()}.."
                f"{part.window_end.isoformat()} is not inside the {res} window"
            )
        for index, name in _SUMMED:
            cell.f[index] += getattr(part, name)
        cell.f[COST_NUSD] += round(part.cost_usd * NANO)
        cell.f[VALUE_NUSD] += round(part.value_usd * NANO)
        for state, ms in part.state_time_ms.items():
            cell.state_ms[state.value] = cell.state_ms.get(state.value, 0) + ms
        if part.latency_sketch is not None:
            other = LatencySketch.from_bytes(part.latency_sketch)
            if sketch is None:
                sketch = other
            else:
                sketch.merge(other)
    accuracy = 0.01
    if sketch is not None:
        cell.bins = sketch.bins
        cell.f[ZERO_LATENCY] = sketch.zero
        accuracy = sketch.relative_accuracy
    return build_rollup(res, start, cell, accuracy, computed_at)
