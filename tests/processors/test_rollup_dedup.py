"""Rollups: the event ids seen (duplicate check) in the changelog, written incrementally.

The table is built here the way the changelog holds it: every drain applied in order
(a dict update, ``None`` deletes). Ground truth (which ids, in which second) comes from
the generated events, not from the aggregator.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstream.core.config import RollupSettings
from agentstream.processors import to_us
from agentstream.processors.rollups import ADDED, DUPLICATE, RollupAggregator
from agentstream.schemas import CallStatus, ToolCall

SETTINGS = RollupSettings(allowed_lateness_s=3, horizon_s=600, sketch_relative_accuracy=0.01)
T0 = datetime(2025, 1, 1, 10, 59, 50, tzinfo=UTC)
FAR = to_us(datetime(2030, 1, 1, tzinfo=UTC))
STAMP = datetime(2025, 1, 2, tzinfo=UTC)


def tool(at_s: float, event_id: str | None = None) -> ToolCall:
    extra = {} if event_id is None else {"event_id": event_id}
    return ToolCall(
        tenant_id="acme",
        user_id="u",
        agent_id="planner",
        agent_version="1.0",
        run_id="r",
        tool="search",
        status=CallStatus.SUCCESS,
        latency_ms=100.0,
        event_time=T0 + timedelta(seconds=at_s),
        **extra,
    )


def second_of(at_s: float) -> int:
    t = to_us(T0 + timedelta(seconds=at_s))
    return t - t % 1_000_000


def apply(table: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply a drain to the table (through JSON, as the changelog stores it)."""
    for key, value in changes.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = json.loads(json.dumps(value))
    return changes


def id_keys(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k.startswith("ids|")}


def written_ids(drains: list[dict[str, Any]]) -> Counter[tuple[int, str]]:
    """(second, id) -> how many times a drain wrote it."""
    written: Counter[tuple[int, str]] = Counter()
    for changes in drains:
        for key, value in id_keys(changes).items():
            if value is not None:
                written.update((int(key.split("|")[1]), event_id) for event_id in value)
    return written


def live_traffic(seed: int) -> list[ToolCall]:
    """30 s of events, ~40 per second, read in about time order, 10 % redelivered."""
    rng = random.Random(seed)
    events = [tool(rng.uniform(0, 30)) for _ in range(1200)]
    events.sort(key=lambda e: e.event_time + timedelta(seconds=rng.uniform(0, 1.5)))
    redelivered = list(events)
    for _ in range(120):
        at = rng.randrange(len(redelivered))
        redelivered.insert(min(at + rng.randrange(1, 50), len(redelivered)), redelivered[at])
    return redelivered


def test_each_id_is_written_once_across_many_drains() -> None:
    events = live_traffic(seed=7)
    agg = RollupAggregator(SETTINGS)
    table: dict[str, Any] = {}
    drains: list[dict[str, Any]] = []
    for i, event in enumerate(events):
        agg.add(event)
        if i % 13 == 0:  # small batches: the open second is drained many times
            agg.advance(computed_at=STAMP)
            drains.append(apply(table, agg.drain_changes()))
    drains.append(apply(table, agg.drain_changes()))
    truth = {(second_of((e.event_time - T0).total_seconds()), e.event_id) for e in events}
    written = written_ids(drains)
    assert set(written) == truth
    assert max(written.values()) == 1
    assert len(id_keys(table)) > 30  # the seconds were written in several chunks
    for key, chunk in id_keys(table).items():
        assert key.count("|") == 2
        assert chunk == sorted(chunk)
    assert table == json.loads(json.dumps(agg.snapshot()))


def test_a_table_of_every_drain_restores_the_duplicate_check() -> None:
    events = live_traffic(seed=11)
    agg = RollupAggregator(SETTINGS)
    table: dict[str, Any] = {}
    for i, event in enumerate(events):
        agg.add(event)
        if i % 17 == 0:
            apply(table, agg.drain_changes())
    agg.advance(computed_at=STAMP)
    apply(table, agg.drain_changes())
    restored = RollupAggregator.restore(SETTINGS, table.items())
    assert restored.snapshot() == agg.snapshot()
    assert all(restored.add(event) == DUPLICATE for event in events)
    # a new id in a second that has chunks already: accepted, written as a new key
    busiest = Counter(key.split("|")[1] for key in id_keys(table)).most_common(1)[0][0]
    at_s = (int(busiest) - second_of(0)) / 1e6 + 0.5
    fresh = tool(at_s)
    assert restored.add(fresh) == ADDED
    assert restored.add(fresh) == DUPLICATE
    changes = id_keys(restored.drain_changes())
    ((key, chunk),) = changes.items()
    assert key.startswith(f"ids|{busiest}|")
    assert key not in table
    assert chunk == [fresh.event_id]
    seqs = [int(k.split("|")[2]) for k in id_keys(table) if k.split("|")[1] == busiest]
    assert int(key.split("|")[2]) == max(seqs) + 1
    apply(table, changes)
    again = RollupAggregator.restore(SETTINGS, table.items())
    assert again.add(fresh) == DUPLICATE


def test_dropping_a_second_deletes_every_chunk_of_it() -> None:
    events = live_traffic(seed=3)
    agg = RollupAggregator(SETTINGS)
    table: dict[str, Any] = {}
    for i, event in enumerate(events):
        agg.add(event)
        if i % 7 == 0:
            agg.advance(computed_at=STAMP)
            apply(table, agg.drain_changes())
    # the last seconds' ids not drained yet: dropped before they were ever written
    agg.advance(computed_at=STAMP)
    apply(table, agg.drain_changes())
    agg.add(tool(31.2))
    agg.add(tool(15.0))  # into a second with chunks: its pending ids go with it
    half = second_of(20.0)
    agg.advance(half + 600_000_000, computed_at=STAMP)  # drops [0, 20) past the horizon
    apply(table, agg.drain_changes())
    kept = {int(k.split("|")[1]) for k in id_keys(table)}
    assert kept
    assert min(kept) == half
    agg.advance(FAR, computed_at=STAMP)
    apply(table, agg.drain_changes())
    assert id_keys(table) == {}
    assert table == json.loads(json.dumps(agg.snapshot()))


def test_the_whole_list_key_of_the_release_before_restores_and_goes_with_its_second() -> None:
    old, other = tool(5.2), tool(5.7)
    chunked = tool(6.1)
    start = second_of(5.0)
    watermark = to_us(T0 + timedelta(seconds=9))
    table: dict[str, Any] = {
        "meta": {
            "version": 2,
            "max_event": watermark + 3_000_000,
            "watermark": watermark,
            "closed": watermark,
            "dropped": watermark - 600_000_000,
        },
        f"ids|{start}": sorted([old.event_id, other.event_id]),
        # a second with both: the old list, and a chunk the upgraded release wrote
        f"ids|{second_of(6.0)}": ["00000000-0000-4000-8000-000000000001"],
        f"ids|{second_of(6.0)}|2": [chunked.event_id],
    }
    agg = RollupAggregator.restore(SETTINGS, table.items())
    assert agg.add(old) == DUPLICATE
    assert agg.add(other) == DUPLICATE
    assert agg.add(tool(6.3, event_id="00000000-0000-4000-8000-000000000001")) == DUPLICATE
    assert agg.add(chunked) == DUPLICATE
    new, later = tool(5.5), tool(6.5)
    assert agg.add(new) == ADDED
    assert agg.add(later) == ADDED
    changes = apply(table, agg.drain_changes())
    assert id_keys(changes) == {
        f"ids|{start}|0": [new.event_id],
        f"ids|{second_of(6.0)}|3": [later.event_id],
    }
    assert table[f"ids|{start}"] == sorted([old.event_id, other.event_id])  # not rewritten
    assert table == json.loads(json.dumps(agg.snapshot()))
    restored = RollupAggregator.restore(SETTINGS, table.items())
    assert restored.add(new) == DUPLICATE
    assert restored.add(old) == DUPLICATE
    agg.advance(second_of(6.0) + 600_000_000, computed_at=STAMP)  # drops [5, 6)
    changes = apply(table, agg.drain_changes())
    assert {k for k, v in id_keys(changes).items() if v is None} == {
        f"ids|{start}",
        f"ids|{start}|0",
    }
    assert {k.split("|")[1] for k in id_keys(table)} == {str(second_of(6.0))}
    agg.advance(FAR, computed_at=STAMP)
    apply(table, agg.drain_changes())
    assert id_keys(table) == {}


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("ids|0|first", ["a"], "invalid literal"),
        ("ids|0|-1", ["a"], "negative"),
        ("ids|abc|0", ["a"], "invalid literal"),
        ("ids|0|0", 5, "not iterable"),
    ],
)
def test_restore_names_a_bad_ids_entry(key: str, value: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        RollupAggregator.restore(SETTINGS, [(key, value)])
    assert repr(key) in str(info.value)
