"""Start-up: the engine's state from its changelog, migrating today's release's layout.

What a restore gives back (:class:`Restored`): the run table and its per-partition-index
timeout trackers, the alert rule states, the rollup aggregator and the event clocks.

Migration from the release before named stores and per-partition clocks (first start,
nothing to run by hand): its keys ``run:``, ``cell:`` and ``alert:`` are the same stores;
its run states lack the partition index (``p``): they are timed by a tracker of their own
on the low watermark until their next event moves them to their partition; its
singleton ``tracker`` key (newest event time per input partition) seeds the clocks and is
deleted by the first commit; its rollup state (version 1) restores as is.

Migration from the single-partition changelog (its clocks in one ``clock:partitions``
entry): the entry seeds the clocks and is deleted by the first commit, which writes
``clock:<p>`` per partition index; moving the runs to their partitions is
:func:`processors.engine._assignment.migrate_changelog`'s job.

A restore covers the changelog partitions a worker was assigned: ``state`` holds only
their keys (each partition's stage-1 cells, merge stage and alert states with it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final, cast

from agentstream.core.config import Settings
from agentstream.processors.engine._state import (
    ALERTS,
    CELLS,
    CLOCKS,
    LEGACY_CLOCKS,
    LEGACY_TRACKER,
    LOW_CLOCK,
    RUNS,
    TrackedDict,
)
from agentstream.processors.engine._watermarks import IndexClock, PartitionClocks
from agentstream.processors.lifecycle import RunState, TimeoutTracker
from agentstream.processors.rollups import RollupAggregator
from agentstream.schemas import InvalidEvent, utc_now

__all__ = ["Restored", "invalid_event", "restore_state"]

_INVALID_NS: Final = uuid.UUID("5f0b6d1e-3c2a-4e59-9a57-1c1f5b7a0d42")


@dataclass
class Restored:
    runs: TrackedDict
    trackers: dict[int | None, TimeoutTracker]
    alerts: TrackedDict
    rollups: RollupAggregator
    clocks: PartitionClocks
    #: a legacy ``tracker`` or ``clock:partitions`` key was read: delete it with the
    #: first commit
    legacy: bool
    cells: int


def restore_state(settings: Settings, state: dict[str, Any]) -> Restored:
    """The engine's state from the changelog's live keys (``read_changelog``)."""
    runs: dict[str, RunState] = RUNS.items(state)
    cells = CELLS.items(state)
    rollups = (
        RollupAggregator.restore(settings.rollups, cells.items(), event_watermark=False)
        if cells
        else RollupAggregator(settings.rollups, event_watermark=False)
    )
    entries = CLOCKS.items(state)
    clock = entries.pop(LEGACY_CLOCKS, None)
    legacy = clock is not None or LEGACY_TRACKER in state
    if clock is not None:
        clocks = PartitionClocks(clock)
    elif LEGACY_TRACKER in state:
        clocks = PartitionClocks.from_legacy(state[LEGACY_TRACKER])
    else:
        clocks = PartitionClocks()
    low = entries.pop(LOW_CLOCK, None)
    if low is not None:
        clocks.low = low
    for p, entry in entries.items():
        clocks.load(int(p), cast(IndexClock, entry))
    by_index: dict[int | None, list[RunState]] = {}
    for run in runs.values():
        by_index.setdefault(run.get("p"), []).append(run)
    lifecycle = settings.lifecycle
    trackers = {p: TimeoutTracker.rebuild(lifecycle, rs) for p, rs in by_index.items()}
    return Restored(
        runs=TrackedDict(dict(runs)),
        trackers=trackers,
        alerts=TrackedDict(ALERTS.items(state)),
        rollups=rollups,
        clocks=clocks,
        legacy=legacy,
        cells=len(cells),
    )


def invalid_event(
    message: Any,
    reason: str,
    error_type: str,
    record: Any = None,
    *,
    detected_now: bool = False,
) -> InvalidEvent:
    """The dead letter of an input record (its id is fixed by topic, partition and offset,
    so a batch repeated after a crash repeats it identically)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    event_time = getattr(record, "event_time", None)
    return InvalidEvent(
        invalid_id=str(uuid.uuid5(_INVALID_NS, f"{topic}/{partition}/{offset}")),
        detected_time=event_time if event_time is not None and not detected_now else utc_now(),
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=message.key(),
        raw=message.value() or b"",
        reason=reason[:4000] or "invalid",
        error_type=error_type,
        run_id=getattr(record, "run_id", None),
        tenant_id=getattr(record, "tenant_id", None),
        event_id=getattr(record, "event_id", None),
    )
