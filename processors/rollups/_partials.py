"""The merge stage of the two-stage rollups: partial cells of every source partition → rollups.

Stage 1 (one :class:`~processors.rollups.RollupAggregator` per input partition index
``p``, on ``p``'s own event clock) sends, for every window it closes or corrects, the
*partial*: the full current value of the cell ``(scope, window)`` over the events of
``p`` (replace semantics: a partial sent again replaces the one before, so a re-send is
idempotent). It sends its *mark* to every partials partition when it moves: ``closed``
(windows ending at or before it are closed at ``p``), ``dropped`` (windows ending at or
before it are forgotten at ``p``: no partial of them comes again) and ``idle`` (``p``
had no input for ``rollups.idle_after_s``: it sent the current value of its open windows
too, and holds no window back).

Stage 2 (:class:`MergeStage`, one per partials partition ``q``: every partial of a scope
goes to the same ``q``) keeps the latest partial per ``(scope, window, source)`` and the
mark per source. The rollup of ``(scope, window)`` is the merge (sums; the sketch bins add
exactly) of the sources' partials; it is emitted once every source has a mark and the
lowest ``closed`` of the sources that are not idle (all idle: the highest) has passed the
window's end; a partial that changes an emitted window emits it again at once, with a
newer ``computed_at`` (the version the tables and the alerts keep the latest of). A
window is forgotten once every source's ``dropped`` has passed its end. The result is
the same whatever the number of workers and however the partitions are spread.

Messages (JSON, on ``<prefix><app_id>-rollup-partials``) and the changelog entries of a
:class:`MergeStage` are described by :func:`encode_partial`, :func:`encode_mark` and
:meth:`MergeStage.drain_changes`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, TypeAlias, cast

from agentstream.core.errors import CodecError
from agentstream.processors._clock import from_us, to_us
from agentstream.processors.rollups._build import RESOLUTION_US, TIERS, build_rollup, window_start
from agentstream.processors.rollups._cells import Cell, CellJson
from agentstream.schemas import Resolution, Rollup, ScopeKind, utc_now

__all__ = [
    "Mark",
    "MergeStage",
    "Partial",
    "decode_message",
    "encode_mark",
    "encode_partial",
    "open_cells",
]

_STATE_VERSION: Final = 1
_META: Final = "meta"
#: (resolution, window start µs, scope key)
_Window: TypeAlias = tuple[Resolution, int, str]


@dataclass(frozen=True, slots=True)
class Partial:
    """Source ``src``'s full current cell of one window."""

    src: int
    resolution: Resolution
    start: int
    cell: Cell


@dataclass(frozen=True, slots=True)
class Mark:
    """Source ``src``'s marks (µs; None: not yet)."""

    src: int
    closed: int | None
    dropped: int | None
    idle: bool


def encode_partial(src: int, resolution: Resolution, start: int, cell: Cell) -> bytes:
    """A partial message: ``{"src", "res", "start", "cell"}`` (the cell's changelog JSON)."""
    body = {"src": src, "res": resolution, "start": start, "cell": cell.to_json()}
    return json.dumps(body, separators=(",", ":")).encode()


def encode_mark(src: int, closed: int | None, dropped: int | None, idle: bool) -> bytes:
    """A mark message: ``{"src", "closed", "dropped", "idle"}``."""
    body = {"src": src, "closed": closed, "dropped": dropped, "idle": idle}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_message(value: bytes | None) -> Partial | Mark:
    """A partials-topic message; :class:`CodecError` naming the field it cannot read."""
    if value is None:
        raise CodecError("rollup partial: empty record")
    try:
        body = json.loads(value)
    except ValueError as exc:
        raise CodecError(f"rollup partial: not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise CodecError("rollup partial: not a JSON object")
    field = "src"
    try:
        src = body["src"]
        if not isinstance(src, int) or src < 0:
            raise ValueError(f"not a partition index: {src!r}")
        if "cell" not in body:
            field = "closed"
            closed, dropped = _opt_int(body["closed"]), _opt_int(body["dropped"])
            field = "idle"
            return Mark(src, closed, dropped, bool(body["idle"]))
        field = "res"
        resolution = body["res"]
        if resolution not in RESOLUTION_US:
            raise ValueError(f"unknown resolution {resolution!r}")
        field = "start"
        start = body["start"]
        if not isinstance(start, int):
            raise ValueError(f"not an integer: {start!r}")
        field = "cell"
        cell = Cell.from_json(cast(CellJson, body["cell"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"rollup partial: field {field!r}: {exc!s}") from exc
    return Partial(src, resolution, start, cell)


def open_cells(
    windows: Mapping[Resolution, Mapping[int, Mapping[str, Cell]]],
    closed: int | None,
    kinds: Mapping[Resolution, Collection[ScopeKind]],
    emitted: Collection[Resolution],
) -> list[tuple[Resolution, int, Cell]]:
    """An aggregator's windows not closed yet (ending after ``closed``), each with what it
    would hold if it closed now: its own cell plus the finer cells not merged into it yet
    (a tier is merged into the next one when it closes); only the ``emitted`` resolutions,
    the next tier holding the scope ``kinds`` of its resolution. What an idle partition
    sends (:mod:`processors.engine._stages`)."""
    totals: dict[_Window, Cell] = {}
    for index, resolution in enumerate(TIERS):
        length = RESOLUTION_US[resolution]
        for start, window in windows[resolution].items():
            if closed is not None and start + length <= closed:
                continue
            for key, cell in window.items():
                total = totals.get((resolution, start, key))
                if total is None:
                    total = totals[(resolution, start, key)] = Cell(cell.scope)
                total.merge(cell)
        parent = TIERS[index + 1] if index + 1 < len(TIERS) else None
        if parent is None:
            continue
        for (tier, start, key), total in list(totals.items()):
            if tier != resolution or total.scope.kind not in kinds[parent]:
                continue
            up = (parent, window_start(start, parent), key)
            if up not in totals:
                totals[up] = Cell(total.scope)
            totals[up].merge(total)
    return [
        (resolution, start, totals[(resolution, start, key)])
        for resolution, start, key in sorted(totals, key=lambda k: (TIERS.index(k[0]), k[1], k[2]))
        if resolution in emitted
    ]


def _opt_int(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    raise ValueError(f"not an integer: {value!r}")


class MergeStage:
    """The merge stage of one partials partition (see the module doc)."""

    def __init__(self, sources: int, relative_accuracy: float) -> None:
        self._sources = sources
        self._accuracy = relative_accuracy
        self._parts: dict[_Window, dict[int, Cell]] = {}
        #: per emitted window, the ``computed_at`` (µs) of its last emission
        self._emitted: dict[_Window, int] = {}
        #: windows changed since their last emission (or never emitted)
        self._pending: set[_Window] = set()
        #: window end -> the windows ending then (for pruning)
        self._ends: dict[int, set[_Window]] = {}
        self._marks: dict[int, Mark] = {}
        #: windows ending at or before it are forgotten
        self._pruned: int | None = None
        self._changed: set[_Window] = set()
        self._marks_changed: set[int] = set()
        self._deleted: set[str] = set()
        #: partials of windows forgotten already (a source's kept window outlived the
        #: stage's: cannot happen while every source sends its marks; counted, not merged)
        self.refused = 0

    # ------------------------------------------------------------------ input

    def partial(self, part: Partial) -> bool:
        """Take a partial (replacing the source's one before); False: its window is gone."""
        key = (part.resolution, part.start, part.cell.scope.key)
        end = part.start + RESOLUTION_US[part.resolution]
        if self._pruned is not None and end <= self._pruned:
            self.refused += 1
            return False
        cells = self._parts.get(key)
        if cells is None:
            cells = self._parts[key] = {}
            self._ends.setdefault(end, set()).add(key)
        before = cells.get(part.src)
        if before is not None and before.to_json() == part.cell.to_json():
            return True  # the same value again (a re-send): nothing changes
        cells[part.src] = part.cell
        self._pending.add(key)
        self._changed.add(key)
        return True

    def mark(self, mark: Mark) -> None:
        """Take a source's marks; its closed and dropped marks never go back (a mark a
        source's committed history already passed, e.g. a fenced zombie's, moves nothing)."""
        old = self._marks.get(mark.src)
        if old is not None:
            mark = replace(
                mark,
                closed=_later(old.closed, mark.closed),
                dropped=_later(old.dropped, mark.dropped),
            )
        if old != mark:
            self._marks[mark.src] = mark
            self._marks_changed.add(mark.src)

    @property
    def watermark(self) -> int | None:
        """Windows ending at or before it are emitted (None: a source has no mark yet)."""
        if len(self._marks) < self._sources:
            return None
        marks = [self._marks[src] for src in range(self._sources)]
        busy = [m.closed for m in marks if not m.idle]
        if busy:
            return None if None in busy else min(c for c in busy if c is not None)
        closed = [m.closed for m in marks if m.closed is not None]
        return max(closed) if closed else None

    # ------------------------------------------------------------------ output

    def advance(self, computed_at: datetime | None = None) -> list[Rollup]:
        """The rollups of the windows the watermark has passed, and of every emitted window
        a partial changed since (1 s first, by window start then scope key); then forget
        the windows every source has dropped."""
        low = self.watermark
        now = to_us(computed_at or utc_now())
        due = [
            key
            for key in self._pending
            if key in self._emitted or (low is not None and key[1] + RESOLUTION_US[key[0]] <= low)
        ]
        due.sort(key=lambda k: (TIERS.index(k[0]), k[1], k[2]))
        out: list[Rollup] = []
        for key in due:
            self._pending.discard(key)
            stamp = max(now, self._emitted.get(key, now - 1) + 1)
            self._emitted[key] = stamp
            self._changed.add(key)
            out.append(
                build_rollup(key[0], key[1], self.merged(key), self._accuracy, from_us(stamp))
            )
        self._prune()
        return out

    def merged(self, key: _Window) -> Cell:
        """The merge of the sources' partials of window ``key``."""
        cells = self._parts[key]
        total = Cell(next(iter(cells.values())).scope)
        for src in sorted(cells):
            total.merge(cells[src])
        return total

    def _prune(self) -> None:
        if len(self._marks) < self._sources:
            return
        dropped = [m.dropped for m in self._marks.values()]
        if None in dropped:
            return  # a source that never dropped a window may still correct any of them
        floor = min(d for d in dropped if d is not None)
        if self._pruned is not None and floor <= self._pruned:
            return
        self._pruned = floor
        for end in [e for e in self._ends if e <= floor]:
            for key in self._ends.pop(end):
                for src in self._parts.pop(key, {}):
                    self._deleted.add(_part_id(key, src))
                self._pending.discard(key)
                self._changed.discard(key)
                if self._emitted.pop(key, None) is not None:
                    self._deleted.add(_emitted_id(key))

    # ------------------------------------------------------------------ persistence

    def drain_changes(self) -> dict[str, Any]:
        """Changelog entries changed since the last drain (``None``: delete the key):
        ``p|<src>|<res>|<start>|<scope>`` (a partial's cell JSON), ``e|<res>|<start>|<scope>``
        (the last ``computed_at``, µs), ``m|<src>`` (the source's marks) and ``meta``."""
        changes: dict[str, Any] = dict.fromkeys(self._deleted)
        for key in self._changed:
            cells = self._parts.get(key, {})
            for src, cell in cells.items():
                changes[_part_id(key, src)] = cell.to_json()
            if key in self._emitted:
                changes[_emitted_id(key)] = self._emitted[key]
        for src in self._marks_changed:
            m = self._marks[src]
            changes[f"m|{src}"] = [m.closed, m.dropped, m.idle]
        if changes:
            changes[_META] = {"version": _STATE_VERSION, "pruned": self._pruned}
        self._deleted.clear()
        self._changed.clear()
        self._marks_changed.clear()
        return changes

    @classmethod
    def restore(
        cls, sources: int, relative_accuracy: float, entries: Iterable[tuple[str, Any]]
    ) -> MergeStage:
        """A merge stage from its changelog entries; :class:`ValueError` names a bad key."""
        stage = cls(sources, relative_accuracy)
        emitted: dict[_Window, int] = {}
        for key, value in entries:
            try:
                kind, _, rest = key.partition("|")
                if key == _META:
                    if value["version"] != _STATE_VERSION:
                        raise ValueError(f"state version {value['version']!r} is not supported")
                    stage._pruned = value["pruned"]
                elif kind == "m":
                    closed, dropped, idle = value
                    stage._marks[int(rest)] = Mark(int(rest), closed, dropped, bool(idle))
                elif kind == "p":
                    src, window = rest.split("|", 1)
                    wkey = _window(window)
                    cells = stage._parts.setdefault(wkey, {})
                    cells[int(src)] = Cell.from_json(cast(CellJson, value))
                    stage._ends.setdefault(wkey[1] + RESOLUTION_US[wkey[0]], set()).add(wkey)
                elif kind == "e":
                    emitted[_window(rest)] = int(value)
                else:
                    raise ValueError("unknown entry")
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"merge stage entry {key!r}: {exc}") from exc
        stage._emitted = {k: v for k, v in emitted.items() if k in stage._parts}
        # a window stored but never emitted is still to emit
        stage._pending = {k for k in stage._parts if k not in stage._emitted}
        return stage

    def __len__(self) -> int:
        return len(self._parts)


def _part_id(key: _Window, src: int) -> str:
    return f"p|{src}|{key[0]}|{key[1]}|{key[2]}"


def _emitted_id(key: _Window) -> str:
    return f"e|{key[0]}|{key[1]}|{key[2]}"


def _window(text: str) -> _Window:
    resolution, start, scope = text.split("|", 2)
    if resolution not in RESOLUTION_US:
        raise ValueError(f"unknown resolution {resolution!r}")
    return (resolution, int(start), scope)


def _later(a: int | None, b: int | None) -> int | None:
    """The later of two marks (None: not yet)."""
    return b if a is None else a if b is None else max(a, b)
