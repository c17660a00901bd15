"""Tumbling event-time rollups at 1 s, 1 min and 1 h, closed by a watermark.

How it works
------------
* Events are added to **1 s cells** (one per scope and second). Nothing else
  happens per event, which keeps the hot path short.
* ``watermark = max(event time seen) - allowed_lateness`` (never goes back;
  :meth:`RollupAggregator.advance` can push it further, e.g. by the wall clock
  while the input is idle). A window ``[start, end)`` is closed once
  ``end <= watermark``.
* :meth:`RollupAggregator.advance` closes windows: every closed 1 s cell is
  emitted (a :class:`~schemas.Rollup`) and then **merged** into its 1 min cell;
  closed 1 min cells are emitted and merged into their 1 h cell; closed 1 h
  cells are emitted. A closed cell is removed, so each window is emitted
  exactly once. Counts are integers and the sketch bins integer counts, so the
  1 min (1 h) figures are exactly the merge of their 1 s windows.
* **Lateness is decided at 1 s.** An event whose 1 s window is already closed
  when it arrives is *late*: it is not aggregated at any resolution (so every
  tier stays the exact merge of the 1 s tier) and is counted in ``late_events``
  of the **earliest open 1 s window** (the one holding the watermark) of each of
  its scopes; that window is emitted later and rolls up into 1 min and 1 h, so
  a late event is never lost silently: it shows up as ``late_events`` in the
  window that was open when it arrived. Exception: a *synthesized* timeout
  (dated at the run's deadline, published after the timeout grace) whose window
  has closed is counted as a failed run in that earliest open window.

Determinism: the late/on-time decision uses the watermark at the moment the
event is added (derived from the events themselves), never the time
``advance`` happens to be called, so the same input order gives the same rollups.

State: JSON-able cells keyed ``"<resolution>|<window start µs>|<scope key>"``
plus a ``"meta"`` entry (watermark); :meth:`RollupAggregator.drain_changes`
returns what changed since the last drain (``None``: delete), for the engine's
changelog topic; :meth:`RollupAggregator.restore` rebuilds the aggregator from
the table's items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, TypeAlias, TypedDict, cast

from agentstream.core.config import RollupSettings
from agentstream.processors._clock import from_us, seconds_to_us, to_us
from agentstream.processors.rollups._cells import (
    COST_NUSD,
    COUNT,
    ERROR,
    LATE,
    MODEL_CALLS,
    NANO,
    NON_RETRYABLE,
    OVERRIDES,
    PARTIAL,
    RETRYABLE,
    REVIEWS,
    RUNS_COMPLETED,
    RUNS_FAILED,
    RUNS_STARTED,
    SUCCESS,
    TIMEOUT,
    TOKENS_IN,
    TOKENS_OUT,
    ZERO_LATENCY,
    Cell,
    CellJson,
    Scope,
    add_redactions,
    scopes_of,
)
from agentstream.processors.rollups._sketch import LatencySketch, mapping_for
from agentstream.schemas import (
    AgentState,
    CallStatus,
    Decision,
    ErrorClass,
    ModelCall,
    Resolution,
    ReviewDecision,
    Rollup,
    StateTransition,
    ToolCall,
    utc_now,
)

__all__ = [
    "META_KEY",
    "QUANTILES",
    "RESOLUTION_US",
    "AggregatorMeta",
    "RollupAggregator",
    "RollupEvent",
    "build_rollup",
    "window_start",
]

#: window length of each resolution, in microseconds
RESOLUTION_US: Final[dict[Resolution, int]] = {
    "1s": 1_000_000,
    "1m": 60_000_000,
    "1h": 3_600_000_000,
}
_TIERS: Final[tuple[Resolution, ...]] = ("1s", "1m", "1h")
_SECOND: Final = RESOLUTION_US["1s"]
#: the quantiles reported as latency_p50 / p95 / p99
QUANTILES: Final = (0.5, 0.95, 0.99)
META_KEY: Final = "meta"
_STATE_VERSION: Final = 1
_SCOPE_CACHE_LIMIT: Final = 100_000

_STATUS: Final = {CallStatus.SUCCESS: SUCCESS, CallStatus.PARTIAL: PARTIAL, CallStatus.ERROR: ERROR}
_ERROR_CLASS: Final = {
    ErrorClass.NONE: -1,
    ErrorClass.RETRYABLE: RETRYABLE,
    ErrorClass.NON_RETRYABLE: NON_RETRYABLE,
    ErrorClass.TIMEOUT: TIMEOUT,
}
_RUN_END: Final = {
    AgentState.INIT: RUNS_STARTED,
    AgentState.COMPLETED: RUNS_COMPLETED,
    AgentState.FAILED: RUNS_FAILED,
}

RollupEvent: TypeAlias = ToolCall | ModelCall | StateTransition | ReviewDecision
_ScopeId: TypeAlias = tuple[str, str, str, str | None]


class AggregatorMeta(TypedDict):
    """The ``"meta"`` table entry."""

    version: int
    max_event: int | None
    watermark: int | None


def window_start(us: int, resolution: Resolution) -> int:
    """Start (µs) of the ``resolution`` window holding instant ``us``."""
    return us - us % RESOLUTION_US[resolution]


def build_rollup(
    resolution: Resolution,
    start_us: int,
    cell: Cell,
    relative_accuracy: float,
    computed_at: datetime | None = None,
) -> Rollup:
    """The :class:`~schemas.Rollup` record of a closed cell."""
    f = cell.f
    sketch = LatencySketch.wrap(relative_accuracy, cell.bins, f[ZERO_LATENCY])
    p50 = p95 = p99 = None
    data = None
    if sketch.bins or sketch.zero:
        p50, p95, p99 = sketch.quantiles(QUANTILES)
        data = sketch.to_bytes()
    scope = cell.scope
    return Rollup(
        resolution=resolution,
        window_start=from_us(start_us),
        window_end=from_us(start_us + RESOLUTION_US[resolution]),
        scope_kind=scope.kind,
        scope_key=scope.key,
        tenant_id=scope.tenant_id,
        agent_id=scope.agent_id,
        agent_version=scope.agent_version,
        tool=scope.tool,
        count=f[COUNT],
        success=f[SUCCESS],
        partial=f[PARTIAL],
        error=f[ERROR],
        retryable=f[RETRYABLE],
        non_retryable=f[NON_RETRYABLE],
        timeout=f[TIMEOUT],
        late_events=f[LATE],
        latency_p50=p50,
        latency_p95=p95,
        latency_p99=p99,
        latency_sketch=data,
        tokens_in=f[TOKENS_IN],
        tokens_out=f[TOKENS_OUT],
        cost_usd=f[COST_NUSD] / NANO,
        model_calls=f[MODEL_CALLS],
        runs_started=f[RUNS_STARTED],
        runs_completed=f[RUNS_COMPLETED],
        runs_failed=f[RUNS_FAILED],
        reviews=f[REVIEWS],
        overrides=f[OVERRIDES],
        state_time_ms={AgentState(s): ms for s, ms in sorted(cell.state_ms.items())},
        computed_at=computed_at or utc_now(),
        redactions=dict(sorted(cell.redactions.items())),
    )


class RollupAggregator:
    """The rollup state of one processor (one partition, or a whole stream)."""

    def __init__(self, settings: RollupSettings, *, event_watermark: bool = True) -> None:
        """``event_watermark=False``: only :meth:`advance` moves the watermark (a caller that
        tracks a low watermark over several input partitions, so that one partition running
        ahead of another does not make the other's events late)."""
        self._settings = settings
        self._event_watermark = event_watermark
        self._lateness = seconds_to_us(settings.allowed_lateness_s)
        self._accuracy = settings.sketch_relative_accuracy
        mapping = mapping_for(self._accuracy)
        self._key = mapping.key
        self._min_latency = mapping.min_possible
        self._emit = frozenset(settings.resolutions)
        self._windows: dict[Resolution, dict[int, dict[str, Cell]]] = {r: {} for r in _TIERS}
        self._max_event: int | None = None
        self._watermark: int | None = None
        #: 1 s windows changed since the last drain
        self._dirty_seconds: set[int] = set()
        #: per open 1 s window: scope ids -> the cells an event of those ids updates
        self._hot: dict[int, dict[_ScopeId, list[Cell]]] = {}
        self._dirty_cells: set[tuple[Resolution, int, str]] = set()
        self._deleted: set[str] = set()
        self._scope_cache: dict[_ScopeId, tuple[Scope, ...]] = {}

    # ------------------------------------------------------------------ state

    @property
    def watermark(self) -> int | None:
        """The watermark (µs): windows ending at or before it are closed."""
        return self._watermark

    # ------------------------------------------------------------------ input

    def add(self, event: RollupEvent) -> None:
        """Add any rollup input (dispatch on its type)."""
        if isinstance(event, ToolCall):
            self.add_tool_call(event)
        elif isinstance(event, ModelCall):
            self.add_model_call(event)
        elif isinstance(event, StateTransition):
            self.add_transition(event)
        elif isinstance(event, ReviewDecision):
            self.add_review(event)
        else:
            raise TypeError(f"not a rollup input: {type(event).__name__}")

    def add_tool_call(self, ev: ToolCall) -> None:
        """A tool call: count, status and error-class split, latency."""
        cells = self._cells(
            to_us(ev.event_time), (ev.tenant_id, ev.agent_id, ev.agent_version, ev.tool)
        )
        if cells is None:
            return
        if ev.redactions:
            add_redactions(cells, ev.redactions)
        latency = ev.latency_ms
        key = self._key(latency) if latency > self._min_latency else None
        status = _STATUS[ev.status]
        error_class = _ERROR_CLASS[ev.error_class]
        for cell in cells:
            f = cell.f
            f[COUNT] += 1
            f[status] += 1
            if error_class >= 0:
                f[error_class] += 1
            if key is None:
                f[ZERO_LATENCY] += 1
            else:
                bins = cell.bins
                bins[key] = bins.get(key, 0) + 1

    def add_model_call(self, ev: ModelCall) -> None:
        """A model call: tokens and cost."""
        cells = self._cells(
            to_us(ev.event_time), (ev.tenant_id, ev.agent_id, ev.agent_version, None)
        )
        if cells is None:
            return
        if ev.redactions:
            add_redactions(cells, ev.redactions)
        cost = round(ev.cost_usd * NANO)
        for cell in cells:
            f = cell.f
            f[MODEL_CALLS] += 1
            f[TOKENS_IN] += ev.input_tokens
            f[TOKENS_OUT] += ev.output_tokens
            f[COST_NUSD] += cost

    def add_transition(self, ev: StateTransition) -> None:
        """A *validated* lifecycle transition (the lifecycle topic): runs and state time.

        A synthesized timeout is dated at the run's deadline but published only
        once the clock passed the deadline plus the timeout grace, often after
        its window closed: it is then counted (runs_failed, state time) in the
        earliest open window, the one open when it was published, not as late.
        """
        cells = self._cells(
            to_us(ev.event_time),
            (ev.tenant_id, ev.agent_id, ev.agent_version, None),
            catch_up=ev.synthesized,
        )
        if cells is None:
            return
        if ev.redactions:
            add_redactions(cells, ev.redactions)
        figure = _RUN_END.get(ev.to_state)
        dwell = ev.dwell_ms if ev.from_state is not None else None
        left = ev.from_state.value if ev.from_state is not None else ""
        for cell in cells:
            if figure is not None:
                cell.f[figure] += 1
            if dwell:
                cell.state_ms[left] = cell.state_ms.get(left, 0) + dwell

    def add_review(self, ev: ReviewDecision) -> None:
        """A human review decision: reviews and overrides."""
        cells = self._cells(
            to_us(ev.event_time), (ev.tenant_id, ev.agent_id, ev.agent_version, None)
        )
        if cells is None:
            return
        if ev.redactions:
            add_redactions(cells, ev.redactions)
        override = ev.decision is Decision.OVERRIDDEN
        for cell in cells:
            cell.f[REVIEWS] += 1
            if override:
                cell.f[OVERRIDES] += 1

    def _scopes(self, ids: _ScopeId) -> tuple[Scope, ...]:
        scopes = self._scope_cache.get(ids)
        if scopes is None:
            if len(self._scope_cache) >= _SCOPE_CACHE_LIMIT:
                self._scope_cache.clear()
            scopes = self._scope_cache[ids] = scopes_of(*ids)
        return scopes

    def _cells(self, t: int, ids: _ScopeId, catch_up: bool = False) -> list[Cell] | None:
        """The 1 s cells of an event at ``t``; None if it is late (then counted as late).

        With ``catch_up`` a late event is not refused: it is aggregated in the
        earliest open window (synthesized timeouts, see :meth:`add_transition`).
        """
        watermark = self._watermark
        if self._max_event is None or t > self._max_event:
            self._max_event = t
            mark = t - self._lateness
            if self._event_watermark and (watermark is None or mark > watermark):
                watermark = self._watermark = mark
        start = t - t % _SECOND
        if watermark is not None and start + _SECOND <= watermark:
            landing = watermark - watermark % _SECOND
            if catch_up:
                return self._second_cells(landing, ids)
            for cell in self._second_cells(landing, ids):
                cell.f[LATE] += 1
            return None
        return self._second_cells(start, ids)

    def _second_cells(self, start: int, ids: _ScopeId) -> list[Cell]:
        """The cells of 1 s window ``start`` for the scopes of ``ids`` (hot path: 2 lookups)."""
        self._dirty_seconds.add(start)
        hot = self._hot.get(start)
        if hot is None:
            hot = self._hot[start] = {}
        cells = hot.get(ids)
        if cells is None:
            window = self._windows["1s"].setdefault(start, {})
            cells = hot[ids] = [self._cell(window, scope) for scope in self._scopes(ids)]
        return cells

    @staticmethod
    def _cell(window: dict[str, Cell], scope: Scope) -> Cell:
        cell = window.get(scope.key)
        if cell is None:
            cell = window[scope.key] = Cell(scope)
        return cell

    # ------------------------------------------------------------------ output

    def advance(
        self, watermark: int | None = None, computed_at: datetime | None = None
    ) -> list[Rollup]:
        """Close every window the watermark has passed; return their rollups, once each.

        ``watermark`` (µs) raises the watermark if it is ahead (e.g. the wall clock
        minus the lateness while the input is idle); it never goes back. Rollups
        come 1 s first, then 1 min, then 1 h, each by window start then scope key;
        only the resolutions in ``RollupSettings.resolutions`` are returned.
        """
        if watermark is not None and (self._watermark is None or watermark > self._watermark):
            self._watermark = watermark
        if self._watermark is None:
            return []
        out: list[Rollup] = []
        stamp = computed_at or utc_now()
        for index, resolution in enumerate(_TIERS):
            parent = _TIERS[index + 1] if index + 1 < len(_TIERS) else None
            out.extend(self._close(resolution, parent, self._watermark, stamp))
        return out

    def _close(
        self, resolution: Resolution, parent: Resolution | None, watermark: int, stamp: datetime
    ) -> list[Rollup]:
        tier = self._windows[resolution]
        length = RESOLUTION_US[resolution]
        closed = sorted(start for start in tier if start + length <= watermark)
        out: list[Rollup] = []
        for start in closed:
            window = tier.pop(start)
            if resolution == "1s":
                self._dirty_seconds.discard(start)
                self._hot.pop(start, None)
            target = None
            if parent is not None:
                target_start = window_start(start, parent)
                target = self._windows[parent].setdefault(target_start, {})
            for key in sorted(window):
                cell = window[key]
                self._deleted.add(f"{resolution}|{start}|{key}")
                if resolution in self._emit:
                    out.append(build_rollup(resolution, start, cell, self._accuracy, stamp))
                if target is not None and parent is not None:
                    into = target.get(key)
                    if into is None:
                        target[key] = cell  # the closed window is dropped: reuse its cell
                    else:
                        into.merge(cell)
                    self._dirty_cells.add((parent, target_start, key))
        return out

    # ------------------------------------------------------------------ persistence

    def drain_changes(self) -> dict[str, CellJson | AggregatorMeta | None]:
        """Table entries changed since the last drain (``None``: delete the key), with meta.

        A deleted key may never have been written (a cell opened and closed
        between two drains): delete with ``table.pop(key, None)``.
        """
        changes: dict[str, CellJson | AggregatorMeta | None] = dict.fromkeys(self._deleted)
        seconds = self._windows["1s"]
        for start in self._dirty_seconds:
            for key, cell in seconds.get(start, {}).items():
                changes[f"1s|{start}|{key}"] = cell.to_json()
        for resolution, start, key in self._dirty_cells:
            cell_or_none = self._windows[resolution].get(start, {}).get(key)
            if cell_or_none is not None:
                changes[f"{resolution}|{start}|{key}"] = cell_or_none.to_json()
        changes[META_KEY] = self._meta()
        self._deleted.clear()
        self._dirty_seconds.clear()
        self._dirty_cells.clear()
        return changes

    def snapshot(self) -> dict[str, CellJson | AggregatorMeta]:
        """Every table entry (all open cells and the meta entry)."""
        entries: dict[str, CellJson | AggregatorMeta] = {META_KEY: self._meta()}
        for resolution, tier in self._windows.items():
            for start, window in tier.items():
                for key, cell in window.items():
                    entries[f"{resolution}|{start}|{key}"] = cell.to_json()
        return entries

    def _meta(self) -> AggregatorMeta:
        return {
            "version": _STATE_VERSION,
            "max_event": self._max_event,
            "watermark": self._watermark,
        }

    @classmethod
    def restore(
        cls,
        settings: RollupSettings,
        entries: Iterable[tuple[str, Mapping[str, Any]]],
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
                    if value["version"] != _STATE_VERSION:
                        raise ValueError(f"state version {value['version']!r} is not supported")
                    agg._max_event = value["max_event"]
                    agg._watermark = value["watermark"]
                    continue
                resolution, start, scope_key = key.split("|", 2)
                if resolution not in RESOLUTION_US:
                    raise ValueError(f"unknown resolution {resolution!r}")
                cell = Cell.from_json(cast(CellJson, value))
                agg._windows[resolution].setdefault(int(start), {})[scope_key] = cell
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"rollup state entry {key!r}: {exc}") from exc
        return agg
