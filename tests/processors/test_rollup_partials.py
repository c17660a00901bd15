"""The merge stage of the two-stage rollups (:mod:`processors.rollups._partials`), pure.

Stage 1 is a :class:`RollupAggregator` per input partition, driven the way the engine
drives it (its own partition's clock, partials on close and correction, marks); the
messages go through their bytes to a :class:`MergeStage` per partials partition, in any
interleaving that keeps each partition's order, with re-sends and restores from the
changelog entries. The expected figures are plain sums over the events, computed here.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstream.core.config import RollupSettings
from agentstream.core.errors import CodecError
from agentstream.processors._clock import to_us
from agentstream.processors.rollups import (
    Cell,
    Mark,
    MergeStage,
    Partial,
    RollupAggregator,
    Scope,
    decode_message,
    encode_mark,
    encode_partial,
)
from agentstream.schemas import CallStatus, ErrorClass, Rollup, ScopeKind, ToolCall

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SECOND = 1_000_000
LATENESS_S = 2.0
SETTINGS = RollupSettings(allowed_lateness_s=LATENESS_S, horizon_s=600, resolutions=("1s", "1m"))
ACCURACY = SETTINGS.sketch_relative_accuracy


def _call(rng: random.Random, at: datetime, tenant: str) -> ToolCall:
    error = rng.random() < 0.2
    return ToolCall(
        event_id=str(uuid.UUID(int=rng.getrandbits(128))),
        tenant_id=tenant,
        user_id="u",
        agent_id="planner",
        agent_version="1.0",
        run_id=f"r{rng.getrandbits(32)}",
        tool=rng.choice(("search", "sql")),
        status=CallStatus.ERROR if error else CallStatus.SUCCESS,
        error_class=ErrorClass.RETRYABLE if error else ErrorClass.NONE,
        latency_ms=round(rng.uniform(1, 900), 3),
        event_time=at,
    )


def _streams(seed: int, partitions: int, n: int = 600) -> list[list[ToolCall]]:
    """Per input partition, its events in read order: mostly in time, some minutes' worth
    late (corrections), some delivered twice (counted once)."""
    rng = random.Random(seed)
    streams: list[list[ToolCall]] = [[] for _ in range(partitions)]
    for i in range(n):
        at = T0 + timedelta(milliseconds=i * 400 + rng.randrange(300))
        event = _call(rng, at, rng.choice(("acme", "globex")))
        stream = streams[rng.randrange(partitions)]
        stream.append(event)
        if rng.random() < 0.05:
            stream.append(event)  # a redelivery
    for stream in streams:  # late arrivals: moved up to 90 s back in read order
        for _ in range(len(stream) // 15):
            i = rng.randrange(len(stream))
            j = min(len(stream) - 1, i + rng.randrange(20, 200))
            stream.insert(j, stream.pop(i))
    return streams


def _scopes(event: ToolCall) -> list[str]:
    tenant = f"tenant={event.tenant_id}"
    return ["global", tenant, f"{tenant}/agent=planner@1.0", f"{tenant}/tool={event.tool}"]


def _truth(streams: list[list[ToolCall]]) -> tuple[Counter[Any], dict[Any, list[float]]]:
    """(resolution, window start, scope, figure) -> value; and the latencies per window."""
    figures: Counter[Any] = Counter()
    latencies: dict[Any, list[float]] = defaultdict(list)
    seen: set[str] = set()
    for event in (e for stream in streams for e in stream):
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        for resolution, length in (("1s", 1), ("1m", 60)):
            start = event.event_time.replace(microsecond=0)
            start -= timedelta(seconds=start.second % length)
            for scope in _scopes(event):
                figures[(resolution, start, scope, "count")] += 1
                figures[(resolution, start, scope, "error")] += event.status == CallStatus.ERROR
                latencies[(resolution, start, scope)].append(event.latency_ms)
    return +figures, latencies


class Pipeline:
    """Stage 1 per input partition as the engine drives it; each message through its
    bytes into a per-partials-partition FIFO; stage 2 per partials partition."""

    def __init__(self, partitions: int, rng: random.Random) -> None:
        self.n = partitions
        self.rng = rng
        self.aggs = [RollupAggregator(SETTINGS, event_watermark=False) for _ in range(partitions)]
        self.newest: list[int | None] = [None] * partitions
        self.sent: list[Any] = [None] * partitions
        self.queues: list[list[bytes]] = [[] for _ in range(partitions)]
        self.stages = [MergeStage(partitions, ACCURACY) for _ in range(partitions)]
        self.changelog: list[dict[str, Any]] = [{} for _ in range(partitions)]
        self.out: list[Rollup] = []

    def home(self, scope_key: str) -> int:
        return sum(scope_key.encode()) % self.n

    def read(self, p: int, event: ToolCall) -> None:
        t = to_us(event.event_time)
        newest = self.newest[p]
        before = t if newest is None else newest
        self.newest[p] = newest = max(before, t)
        self.aggs[p].add(event, before)
        mark = newest - round(LATENESS_S * SECOND)
        self.send(p, self.aggs[p].advance_cells(mark))

    def send(self, p: int, cells: list[Any], idle: bool = False) -> None:
        for resolution, start, cell in cells:
            body = encode_partial(p, resolution, start, cell)
            self.queues[self.home(cell.scope.key)].append(body)
            if self.rng.random() < 0.1:  # a re-send (replace semantics: nothing changes)
                self.queues[self.home(cell.scope.key)].append(body)
        agg = self.aggs[p]
        marks = (agg.closed, agg.dropped, idle)
        if marks != self.sent[p]:
            self.sent[p] = marks
            for queue in self.queues:
                queue.append(encode_mark(p, *marks))

    def idle(self, p: int) -> None:
        """Partition ``p`` is read to its end and quiet: its open windows go out."""
        self.send(p, self.aggs[p].open_cells(), idle=True)

    def wall(self, p: int, mark: datetime) -> None:
        """The wall clock stands in for ``p``'s event time (quiet for ``idle_after_s``)."""
        self.send(p, self.aggs[p].advance_cells(to_us(mark)), idle=True)

    def deliver(self, q: int, count: int) -> None:
        stage = self.stages[q]
        for body in self.queues[q][:count]:
            item = decode_message(body)
            if isinstance(item, Partial):
                assert stage.partial(item)
            else:
                stage.mark(item)
        del self.queues[q][:count]
        self.out += stage.advance()
        for key, value in stage.drain_changes().items():
            if value is None:
                self.changelog[q].pop(key, None)
            else:
                self.changelog[q][key] = value

    def restart(self, q: int) -> None:
        """Another worker takes partials partition ``q`` over: state from the changelog."""
        self.stages[q] = MergeStage.restore(self.n, ACCURACY, self.changelog[q].items())

    def drain(self) -> None:
        while any(self.queues):
            q = self.rng.choice([q for q, queue in enumerate(self.queues) if queue])
            self.deliver(q, self.rng.randint(1, 40))
            if self.rng.random() < 0.05:
                self.restart(q)


def _latest(rollups: list[Rollup]) -> dict[tuple[str, datetime, str], Rollup]:
    latest: dict[tuple[str, datetime, str], Rollup] = {}
    for r in rollups:
        key = (r.resolution, r.window_start, r.scope_key)
        if key not in latest or r.computed_at > latest[key].computed_at:
            latest[key] = r
    return latest


def _run(seed: int, partitions: int) -> tuple[Pipeline, list[list[ToolCall]]]:
    rng = random.Random(seed * 100 + partitions)
    streams = _streams(seed, partitions)
    pipe = Pipeline(partitions, rng)
    at = [0] * partitions
    while any(at[p] < len(s) for p, s in enumerate(streams)):
        p = rng.choice([p for p, s in enumerate(streams) if at[p] < len(s)])
        for event in streams[p][at[p] : at[p] + rng.randint(1, 30)]:
            pipe.read(p, event)
            at[p] += 1
        if rng.random() < 0.3:
            pipe.drain()
    for p in range(partitions):
        pipe.idle(p)
    pipe.drain()
    for p in range(partitions):
        pipe.wall(p, T0 + timedelta(hours=1))
    pipe.drain()
    return pipe, streams


@pytest.mark.parametrize(("seed", "partitions"), [(1, 1), (2, 2), (3, 4), (4, 6)])
def test_merged_rollups_are_the_plain_sums_over_the_events(seed: int, partitions: int) -> None:
    pipe, streams = _run(seed, partitions)
    figures, latencies = _truth(streams)
    latest = _latest(pipe.out)
    got: Counter[Any] = Counter()
    for (resolution, start, scope), r in latest.items():
        got[(resolution, start, scope, "count")] = r.count
        got[(resolution, start, scope, "error")] = r.error
    assert +got == figures
    late = sum(
        r.late_events for (res, _, scope), r in latest.items() if res == "1s" and scope == "global"
    )
    assert late > 0, "the streams must hold corrections"
    for key, values in latencies.items():
        values.sort()
        exact = values[int(0.5 * (len(values) - 1))]  # ddsketch's lower quantile
        p50 = latest[key].latency_p50
        assert p50 is not None, key
        assert abs(p50 - exact) <= ACCURACY * exact * 1.0001, key


def test_a_window_waits_for_every_source_then_is_corrected_with_a_newer_version() -> None:
    stage = MergeStage(2, ACCURACY)
    scope = Scope(ScopeKind.GLOBAL, "global")
    start = to_us(T0)

    def cell(count: int) -> Cell:
        c = Cell(scope)
        c.f[0] = count
        return c

    stage.partial(Partial(0, "1s", start, cell(3)))
    stage.mark(Mark(0, start + SECOND, None, False))
    assert stage.advance() == []  # source 1 has said nothing yet
    stage.mark(Mark(1, start, None, False))
    assert stage.advance() == []  # source 1 has not closed the window
    stage.mark(Mark(1, start + SECOND, None, False))
    (first,) = stage.advance()
    assert first.count == 3
    stage.partial(Partial(1, "1s", start, cell(4)))
    stage.partial(Partial(0, "1s", start, cell(3)))  # a re-send: replaces, changes nothing
    (second,) = stage.advance()
    assert second.count == 7
    assert second.computed_at > first.computed_at
    assert stage.advance() == []
    stage.partial(Partial(1, "1s", start, cell(5)))  # a correction at source 1 replaces its 4
    (third,) = stage.advance()
    assert third.count == 8


def test_idle_sources_hold_nothing_and_pruning_waits_for_every_source() -> None:
    stage = MergeStage(3, ACCURACY)
    scope = Scope(ScopeKind.GLOBAL, "global")
    start = to_us(T0)
    c = Cell(scope)
    c.f[0] = 1
    stage.partial(Partial(2, "1s", start, c))
    stage.mark(Mark(0, start + 5 * SECOND, start, False))
    stage.mark(Mark(1, None, None, True))  # never had input
    stage.mark(Mark(2, start, start - 600 * SECOND, True))  # idle: its open windows were sent
    assert [r.count for r in stage.advance()] == [1]
    stage.mark(Mark(0, start + 700 * SECOND, start + 100 * SECOND, False))
    stage.mark(Mark(2, start + 700 * SECOND, start + 100 * SECOND, False))
    stage.advance()
    assert len(stage) == 1  # source 1 has dropped nothing: it may still send that window
    stage.mark(Mark(1, start + 700 * SECOND, start + 100 * SECOND, True))
    stage.advance()
    assert len(stage) == 0
    assert not stage.partial(Partial(2, "1s", start, c))
    assert stage.refused == 1
    live = {k: v for k, v in stage.drain_changes().items() if v is not None}
    restored = MergeStage.restore(3, ACCURACY, live.items())
    assert not restored.partial(Partial(0, "1s", start, c))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", "not JSON"),
        (b'{"src": -1, "closed": 1, "dropped": null, "idle": false}', "'src'"),
        (b'{"src": 0, "closed": "x", "dropped": null, "idle": false}', "'closed'"),
        (b'{"src": 0, "res": "2s", "start": 0, "cell": {}}', "'res'"),
        (b'{"src": 0, "res": "1s", "start": 0, "cell": {}}', "'cell'"),
    ],
)
def test_a_bad_message_names_its_field(body: bytes, field: str) -> None:
    with pytest.raises(CodecError, match=field):
        decode_message(body)


def test_open_cells_hold_every_event_of_the_windows_not_closed_yet() -> None:
    """What an idle partition sends: per open window, every event counted so far (its own
    cell and the finer cells not merged into it yet), from plain counts."""
    rng = random.Random(5)
    agg = RollupAggregator(SETTINGS, event_watermark=False)
    events = [_call(rng, T0 + timedelta(milliseconds=i * 700), "acme") for i in range(300)]
    for event in events:
        agg.add(event)
    cut = T0 + timedelta(seconds=95, milliseconds=500)  # inside the second minute
    closed = agg.advance_cells(to_us(cut))
    assert closed
    want: Counter[Any] = Counter()
    for event in events:
        for resolution, length in (("1s", 1), ("1m", 60)):
            start = event.event_time.replace(microsecond=0)
            start -= timedelta(seconds=start.second % length)
            if start + timedelta(seconds=length) > cut.replace(microsecond=0):
                want[(resolution, start, "global")] += 1
    got = {
        (resolution, datetime.fromtimestamp(start / SECOND, UTC), cell.scope.key): cell.f[0]
        for resolution, start, cell in agg.open_cells()
        if cell.scope.key == "global"
    }
    assert got == dict(want)
    assert got[("1m", T0 + timedelta(minutes=1), "global")] == sum(
        T0 + timedelta(minutes=1) <= e.event_time < T0 + timedelta(minutes=2) for e in events
    )


def test_a_sources_marks_never_go_back() -> None:
    stage = MergeStage(2, ACCURACY)
    start = to_us(T0)
    stage.mark(Mark(0, start + 10 * SECOND, start, False))
    stage.mark(Mark(1, start + 4 * SECOND, None, False))
    assert stage.watermark == start + 4 * SECOND
    # a stale mark of source 1 (a fenced zombie's, or replayed) holds nothing back
    stage.mark(Mark(1, start + 2 * SECOND, None, False))
    assert stage.watermark == start + 4 * SECOND
    stage.mark(Mark(1, start + 6 * SECOND, None, False))
    assert stage.watermark == start + 6 * SECOND
