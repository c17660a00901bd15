"""Tumbling event-time rollups at 1 s, 1 min and 1 h: closed by a watermark, corrected by late
events up to a horizon, duplicates counted once.

How it works
------------
* Every event counts in the windows of **its own event time**, whatever order it is read
  in. Events are added to **1 s cells** (one per scope and second): the hot path.
* ``watermark`` (µs; never goes back) closes windows: :meth:`RollupAggregator.advance`
  emits every window ``[start, end)`` with ``end <= watermark`` (a :class:`~schemas.Rollup`)
  and **merges** each closed 1 s cell into its 1 min cell, each closed 1 min cell into its
  1 h cell. Counts are integers and the sketch bins integer counts, so the 1 min (1 h)
  figures are exactly the merge of their 1 s windows.
* **Corrections.** A closed cell is kept until ``end + horizon_s <= watermark``. An event
  whose window is closed but kept is added to its 1 s cell and, the 1 s window being
  merged already, to its 1 min cell (and 1 h cell if the minute is merged too); the
  changed closed cells are emitted again by the next :meth:`advance`, with the corrected
  totals and a newer ``computed_at`` (the tables keep the latest). The tiers stay exact
  merges of the 1 s tier for every accepted event.
* **Too late.** An event whose 1 s window ended ``horizon_s`` or more before the clock is
  refused (:data:`TOO_LATE`) and counted nowhere: the caller dead-letters it. The clock
  is the event's own partition's watermark (``clock_us`` minus the allowed lateness),
  so the verdict depends on the order of that partition only, not on how partitions
  interleave; or the aggregator's watermark, when a window is already dropped.
* ``late_events`` of a window counts its accepted events that arrived after their
  partition's watermark passed the window's end: read from their own input partition
  after an event dated ``allowed_lateness`` or more past the window's end. A function of
  each partition's order only (never of the interleaving, batching or restarts);
  synthesized timeouts are never late.
* **Duplicates.** The event ids of every kept 1 s window are remembered: an event id seen
  before in its window (a redelivery has the same event time, so the same window) is
  refused (:data:`DUPLICATE`). The dedup window is therefore the horizon.
* A *synthesized* timeout (dated at the run's deadline, published when a clock passed
  it) counts in its deadline's window: windows are kept past the horizon while a live
  run's deadline falls in them (``advance(keep_from=...)``), so the timeout lands in its
  own window whichever clock fired it; if that window is gone all the same, it is
  refused (:data:`TOO_LATE`), never added to another window.

State: JSON-able entries ``"<resolution>|<window start µs>|<scope key>"`` (cells),
``"ids|<window start µs>|<seq>"`` (event ids seen: each drain writes a window's new ids
as its next chunk, ``seq`` 0, 1, 2…, so each id is written once;
:mod:`~processors.rollups._dedup`) and ``"meta"``;
:meth:`RollupAggregator.drain_changes` returns what changed since the last drain
(``None``: delete), :meth:`RollupAggregator.restore` rebuilds the aggregator. State
version 1 (no ids, no closed-through mark) restores as is; so does the whole-list ids
key ``"ids|<window start µs>"`` of the release before (deleted with its window).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias, TypedDict, cast

from agentstream.core.config import RollupSettings
from agentstream.processors._clock import seconds_to_us, to_us
from agentstream.processors.rollups._build import (
    QUANTILES,
    RESOLUTION_US,
    TIERS,
    build_rollup,
    window_start,
)
from agentstream.processors.rollups._cells import (
    Cell,
    CellJson,
    Scope,
    add_redactions,
    scopes_of,
)
from agentstream.processors.rollups._dedup import IDS, SeenIds
from agentstream.processors.rollups._figures import (
    add_model_call,
    add_review,
    add_tool_call,
    add_transition,
)
from agentstream.processors.rollups._partials import open_cells
from agentstream.processors.rollups._sketch import mapping_for
from agentstream.schemas import (
    ModelCall,
    Resolution,
    ReviewDecision,
    Rollup,
    ScopeKind,
    StateTransition,
    ToolCall,
    utc_now,
)

__all__ = [
    "ADDED",
    "DUPLICATE",
    "META_KEY",
    "QUANTILES",
    "RESOLUTION_US",
    "TOO_LATE",
    "AggregatorMeta",
    "RollupAggregator",
    "RollupEvent",
    "Verdict",
    "build_rollup",
    "window_start",
]

_SECOND: Final = RESOLUTION_US["1s"]
META_KEY: Final = "meta"
_STATE_VERSION: Final = 2
_SCOPE_CACHE_LIMIT: Final = 100_000
#: what :meth:`RollupAggregator.add` did with an event
Verdict: TypeAlias = Literal["added", "duplicate", "too late"]
ADDED: Final[Verdict] = "added"
DUPLICATE: Final[Verdict] = "duplicate"
TOO_LATE: Final[Verdict] = "too late"


RollupEvent: TypeAlias = ToolCall | ModelCall | StateTransition | ReviewDecision
_ScopeId: TypeAlias = tuple[str, str, str, str | None]
_CellKey: TypeAlias = tuple[Resolution, int, str]


class AggregatorMeta(TypedDict, total=False):
    """The ``"meta"`` table entry."""

    version: int
    max_event: int | None
    watermark: int | None
    #: the watermark of the last :meth:`RollupAggregator.advance`: windows ending at or
    #: before it are emitted (and merged into the next tier)
    closed: int | None
    #: windows ending at or before it are forgotten
    dropped: int | None


class RollupAggregator:
    """The rollup state of one processor (one partition, or a whole stream)."""

    def __init__(self, settings: RollupSettings, *, event_watermark: bool = True) -> None:
        """``event_watermark=False``: only :meth:`advance` moves the watermark (a caller that
        tracks a low watermark over several input partitions, so that one partition running
        ahead of another does not close the other's windows)."""
        self._settings = settings
        self._event_watermark = event_watermark
        self._lateness = seconds_to_us(settings.allowed_lateness_s)
        self._horizon = seconds_to_us(settings.horizon_s)
        self._accuracy = settings.sketch_relative_accuracy
        mapping = mapping_for(self._accuracy)
        self._key = mapping.key
        self._min_latency = mapping.min_possible
        self._emit = frozenset(settings.resolutions)
        #: the scope kinds each tier holds (the 1 d tier: ``daily_scope_kinds`` only)
        self._kinds: dict[Resolution, frozenset[ScopeKind]] = {
            r: frozenset(settings.daily_scope_kinds if r == "1d" else ScopeKind) for r in TIERS
        }
        self._windows: dict[Resolution, dict[int, dict[str, Cell]]] = {r: {} for r in TIERS}
        #: the event ids seen per kept 1 s window (and their chunks of the table)
        self._seen = SeenIds()
        self._max_event: int | None = None
        self._watermark: int | None = None
        self._closed: int | None = None
        #: windows ending at or before it are forgotten (past the horizon)
        self._dropped: int | None = None
        #: open 1 s windows changed since the last drain
        self._dirty_seconds: set[int] = set()
        #: per open 1 s window: scope ids -> the cells an event of those ids updates
        self._hot: dict[int, dict[_ScopeId, list[Cell]]] = {}
        self._dirty_cells: set[_CellKey] = set()
        #: closed cells changed since they were emitted
        self._corrected: set[_CellKey] = set()
        self._deleted: set[str] = set()
        self._scope_cache: dict[_ScopeId, tuple[Scope, ...]] = {}

    # ------------------------------------------------------------------ state

    @property
    def watermark(self) -> int | None:
        """The watermark (µs): windows ending at or before it are closed."""
        return self._watermark

    @property
    def closed(self) -> int | None:
        """Windows ending at or before it are closed (emitted; later events correct them)."""
        return self._closed

    @property
    def dropped(self) -> int | None:
        """Windows ending at or before it are forgotten (no event can change them now)."""
        return self._dropped

    # ------------------------------------------------------------------ input

    def add(
        self, event: RollupEvent, clock_us: int | None = None, event_us: int | None = None
    ) -> Verdict:
        """Add any rollup input; ``clock_us``: the newest event time read before it on its
        partition (default: the newest the aggregator saw); ``event_us``: its event time in
        µs when the caller has it. :data:`ADDED`, :data:`DUPLICATE` (not counted) or
        :data:`TOO_LATE` (not counted: dead-letter it)."""
        t = to_us(event.event_time) if event_us is None else event_us
        if self._max_event is None or t > self._max_event:
            self._max_event = t
            mark = t - self._lateness
            if self._event_watermark and (self._watermark is None or mark > self._watermark):
                self._watermark = mark
        if clock_us is None:
            clock_us = self._max_event
        second = t - t % _SECOND
        if self._seen.seen(second, event.event_id):
            return DUPLICATE
        ids = (event.tenant_id, event.agent_id, event.agent_version, None)
        partition_mark = clock_us - self._lateness
        limit = partition_mark if self._watermark is None else max(partition_mark, self._watermark)
        # our own timeout, published when a clock passed its deadline, by design: never
        # late (which clock passed it first depends on the interleaving); it counts in the
        # deadline's window, kept while a run may still time out in it (``advance``)
        synthesized = isinstance(event, StateTransition) and event.synthesized
        late = second + _SECOND <= partition_mark and not synthesized
        if synthesized:
            if self._dropped is not None and second + _SECOND <= self._dropped:
                return TOO_LATE
        elif second + _SECOND + self._horizon <= limit:
            return TOO_LATE
        if isinstance(event, ToolCall):
            cells = self._cells(second, (*ids[:3], event.tool))
            latency = event.latency_ms
            key = self._key(latency) if latency > self._min_latency else None
            add_tool_call(event, cells, late, key)
        elif isinstance(event, ModelCall):
            cells = self._cells(second, ids)
            add_model_call(event, cells, late)
        elif isinstance(event, StateTransition):
            cells = self._cells(second, ids)
            add_transition(event, cells, late)
        elif isinstance(event, ReviewDecision):
            cells = self._cells(second, ids)
            add_review(event, cells, late)
        else:
            raise TypeError(f"not a rollup input: {type(event).__name__}")
        if event.redactions:
            add_redactions(cells, event.redactions)
        self._seen.add(second, event.event_id)
        return ADDED

    def _scopes(self, ids: _ScopeId) -> tuple[Scope, ...]:
        scopes = self._scope_cache.get(ids)
        if scopes is None:
            if len(self._scope_cache) >= _SCOPE_CACHE_LIMIT:
                self._scope_cache.clear()
            scopes = self._scope_cache[ids] = scopes_of(*ids)
        return scopes

    def _cells(self, start: int, ids: _ScopeId) -> list[Cell]:
        """The cells an event of 1 s window ``start`` updates (hot path: 2 lookups)."""
        closed = self._closed
        if closed is not None and start + _SECOND <= closed:
            return self._correction(start, ids, closed)
        self._dirty_seconds.add(start)
        hot = self._hot.get(start)
        if hot is None:
            hot = self._hot[start] = {}
        cells = hot.get(ids)
        if cells is None:
            window = self._windows["1s"].setdefault(start, {})
            cells = hot[ids] = [self._cell(window, scope) for scope in self._scopes(ids)]
        return cells

    def _correction(self, t: int, ids: _ScopeId, closed: int) -> list[Cell]:
        """The cells of an event of a closed window: its 1 s cells and, where the finer
        window is merged already, the coarser ones (each marked to be emitted again)."""
        cells: list[Cell] = []
        for resolution in TIERS:
            start = window_start(t, resolution)
            window = self._windows[resolution].setdefault(start, {})
            is_closed = start + RESOLUTION_US[resolution] <= closed
            kinds = self._kinds[resolution]
            for scope in self._scopes(ids):
                if scope.kind not in kinds:
                    continue
                cells.append(self._cell(window, scope))
                key = (resolution, start, scope.key)
                self._dirty_cells.add(key)
                if is_closed:
                    self._corrected.add(key)
            if not is_closed:
                break  # this tier is not merged into the next yet
        return cells

    @staticmethod
    def _cell(window: dict[str, Cell], scope: Scope) -> Cell:
        cell = window.get(scope.key)
        if cell is None:
            cell = window[scope.key] = Cell(scope)
        return cell

    # ------------------------------------------------------------------ output

    def advance(
        self,
        watermark: int | None = None,
        computed_at: datetime | None = None,
        keep_from: Callable[[], int | None] | None = None,
    ) -> list[Rollup]:
        """Emit every window the watermark has passed (once) and every corrected one (again).

        ``watermark`` (µs) raises the watermark if it is ahead; it never goes back.
        Rollups come 1 s first, then 1 min, then 1 h, each by window start then scope
        key; only the resolutions in ``RollupSettings.resolutions`` are returned.
        Windows ``horizon_s`` past their end are then dropped, except from ``keep_from()``
        on (µs: the earliest deadline of a live run, whose timeout will count there;
        asked whenever the dropped mark would move: keep it cheap).
        """
        stamp = computed_at or utc_now()
        return [
            build_rollup(resolution, start, cell, self._accuracy, stamp)
            for resolution, start, cell in self.advance_cells(watermark, keep_from)
        ]

    def advance_cells(
        self,
        watermark: int | None = None,
        keep_from: Callable[[], int | None] | None = None,
    ) -> list[tuple[Resolution, int, Cell]]:
        """:meth:`advance`, the cells instead of their rollups (live objects: read them
        before the next :meth:`add`)."""
        if watermark is not None and (self._watermark is None or watermark > self._watermark):
            self._watermark = watermark
        mark = self._watermark
        if mark is None:
            return []
        before = self._closed
        out: list[tuple[Resolution, int, Cell]] = []
        for index, resolution in enumerate(TIERS):
            parent = TIERS[index + 1] if index + 1 < len(TIERS) else None
            out.extend(self._close(resolution, parent, before, mark))
        self._closed = mark if before is None else max(before, mark)
        self._corrected.clear()
        through = mark - self._horizon
        # asked whenever the dropped mark would move, windows to drop or not: a timeout
        # dated past every window left (a quiet stretch) must still find its own
        if keep_from is not None and (self._dropped is None or through > self._dropped):
            floor = keep_from()
            if floor is not None:
                through = min(through, floor - floor % _SECOND)
        self._drop(through)
        return out

    def open_cells(self) -> list[tuple[Resolution, int, Cell]]:
        """The current value of every window not closed yet, in the emitted resolutions
        (:func:`~processors.rollups._partials.open_cells`; new objects)."""
        return open_cells(self._windows, self._closed, self._kinds, self._emit)

    def _close(
        self,
        resolution: Resolution,
        parent: Resolution | None,
        before: int | None,
        mark: int,
    ) -> list[tuple[Resolution, int, Cell]]:
        tier = self._windows[resolution]
        length = RESOLUTION_US[resolution]
        emit: set[_CellKey] = {key for key in self._corrected if key[0] == resolution}
        for start in sorted(tier):
            end = start + length
            if end > mark or (before is not None and end <= before):
                continue
            window = tier[start]
            dirty = False
            if resolution == "1s":
                dirty = start in self._dirty_seconds
                self._dirty_seconds.discard(start)
                self._hot.pop(start, None)
            target = None
            kinds = self._kinds[parent] if parent is not None else frozenset()
            if parent is not None:
                target_start = window_start(start, parent)
                target = self._windows[parent].setdefault(target_start, {})
            for key, cell in window.items():
                emit.add((resolution, start, key))
                if dirty:
                    self._dirty_cells.add((resolution, start, key))
                if target is not None and parent is not None and cell.scope.kind in kinds:
                    self._cell(target, cell.scope).merge(cell)
                    self._dirty_cells.add((parent, target_start, key))
        if resolution not in self._emit:
            return []
        return [
            (resolution, start, tier[start][key])
            for resolution, start, key in sorted(emit, key=lambda k: (k[1], k[2]))
        ]

    def _drop(self, through: int) -> None:
        """Forget the windows ending at or before ``through`` (past the horizon)."""
        if self._dropped is None or through > self._dropped:
            self._dropped = through
        for resolution in TIERS:
            tier = self._windows[resolution]
            length = RESOLUTION_US[resolution]
            for start in [s for s in tier if s + length <= through]:
                for key in tier.pop(start):
                    self._deleted.add(f"{resolution}|{start}|{key}")
                    self._dirty_cells.discard((resolution, start, key))
        self._seen.drop(through)

    # ------------------------------------------------------------------ persistence

    def drain_changes(self) -> dict[str, CellJson | AggregatorMeta | list[str] | None]:
        """Table entries changed since the last drain (``None``: delete the key), with meta.

        A deleted key may never have been written (a cell opened and closed
        between two drains): delete with ``table.pop(key, None)``.
        """
        changes: dict[str, CellJson | AggregatorMeta | list[str] | None] = dict.fromkeys(
            self._deleted
        )
        seconds = self._windows["1s"]
        for start in self._dirty_seconds:
            for key, cell in seconds.get(start, {}).items():
                changes[f"1s|{start}|{key}"] = cell.to_json()
        for resolution, start, key in self._dirty_cells:
            cell_or_none = self._windows[resolution].get(start, {}).get(key)
            if cell_or_none is not None:
                changes[f"{resolution}|{start}|{key}"] = cell_or_none.to_json()
        changes.update(self._seen.drain())
        changes[META_KEY] = self._meta()
        self._deleted.clear()
        self._dirty_seconds.clear()
        self._dirty_cells.clear()
        return changes

    def snapshot(self) -> dict[str, CellJson | AggregatorMeta | list[str]]:
        """Every table entry after a drain now (all kept cells, the ids' chunks including
        the one the next drain writes, and the meta entry), without draining: a table that
        applied every drain holds exactly these after the next one."""
        entries: dict[str, CellJson | AggregatorMeta | list[str]] = {META_KEY: self._meta()}
        for resolution, tier in self._windows.items():
            for start, window in tier.items():
                for key, cell in window.items():
                    entries[f"{resolution}|{start}|{key}"] = cell.to_json()
        entries.update(self._seen.entries())
        return entries

    def _meta(self) -> AggregatorMeta:
        return {
            "version": _STATE_VERSION,
            "max_event": self._max_event,
            "watermark": self._watermark,
            "closed": self._closed,
            "dropped": self._dropped,
        }

    @classmethod
    def restore(
        cls,
        settings: RollupSettings,
        entries: Iterable[tuple[str, Any]],
        *,
        event_watermark: bool = True,
    ) -> RollupAggregator:
        """An aggregator from table entries: ``snapshot().items()``, or a table's items.

        Raises :class:`ValueError` naming the key of an entry it cannot read.
        """
        agg = cls(settings, event_watermark=event_watermark)
        for key, value in entries:
            try:
                if key == META_KEY:
                    agg._restore_meta(value)
                    continue
                resolution, start, *rest = key.split("|", 2)
                if resolution == IDS:
                    seq = int(rest[0]) if rest else None
                    agg._seen.restore(int(start), seq, cast(Iterable[object], value))
                    continue
                if resolution not in RESOLUTION_US or not rest:
                    raise ValueError(f"unknown resolution {resolution!r}")
                cell = Cell.from_json(cast(CellJson, value))
                agg._windows[resolution].setdefault(int(start), {})[rest[0]] = cell
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"rollup state entry {key!r}: {exc}") from exc
        return agg

    def _restore_meta(self, value: Mapping[str, Any]) -> None:
        version = value["version"]
        if version not in (1, _STATE_VERSION):
            raise ValueError(f"state version {version!r} is not supported")
        self._max_event = value["max_event"]
        self._watermark = value["watermark"]
        # version 1 kept no closed windows: everything before its watermark was closed
        self._closed = value.get("closed", self._watermark)
        dropped = value.get("dropped")
        if dropped is None and self._watermark is not None:
            dropped = self._watermark - self._horizon
        self._dropped = dropped
