"""What was stored against the truth: one row per figure (figure, truth, stored, difference).

Counts must be equal; a latency quantile must lie within the sketch's relative
accuracy of the exact quantile of the generated latencies. Like :mod:`.truth`, this
module does not import the engine or the sink (what is stored arrives as a
:class:`Stored`, read by :mod:`.stored`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from agentstream.devtools.soak.truth import (
    FIGURES,
    QUANTILES,
    RESOLUTIONS,
    CellTruth,
    Timeout,
    Truth,
)

__all__ = [
    "CellDifference",
    "Row",
    "Stored",
    "StoredCell",
    "cell_differences",
    "compare",
    "differences",
    "write_cell_differences",
]

_KINDS: Final = ("GLOBAL", "TENANT", "AGENT", "TOOL")
_STATES: Final = ("INIT", "PREPARING", "EXECUTING", "REVIEWING")


@dataclass
class StoredCell:
    """One stored rollup row (the latest by ``computed_at``)."""

    kind: str
    figures: dict[str, int] = field(default_factory=dict)
    state_ms: dict[str, int] = field(default_factory=dict)
    quantiles: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    """One stored dead letter."""

    event_id: str | None
    reason: str
    error_type: str
    source: str


@dataclass
class Stored:
    """What the tables hold (deduplicated), in the truth's terms."""

    records: dict[str, set[str]] = field(default_factory=dict)
    #: rows of the event tables dated in absurd years
    absurd_records: int = 0
    transitions: set[str] = field(default_factory=set)
    timeouts: dict[str, list[Timeout]] = field(default_factory=dict)
    runs_completed: set[str] = field(default_factory=set)
    runs_failed: set[str] = field(default_factory=set)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: (resolution, window start µs, scope key) → cell, windows ending by the cutoff
    cells: dict[tuple[str, int, str], StoredCell] = field(default_factory=dict)
    #: rollup rows of windows in absurd years
    absurd_windows: int = 0


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    figure: str
    truth: int
    stored: int

    @property
    def difference(self) -> int:
        return self.stored - self.truth

    @property
    def ok(self) -> bool:
        return self.stored == self.truth


def differences(rows: Iterable[Row]) -> list[Row]:
    """The rows that differ."""
    return [row for row in rows if not row.ok]


@dataclass(frozen=True)
class CellDifference:
    """One figure of one rollup cell that differs (``None``: the cell is absent)."""

    resolution: str
    window_start_us: int
    scope: str
    figure: str
    truth: float | None
    stored: float | None

    def line(self) -> str:
        start = datetime.fromtimestamp(self.window_start_us / 1e6, UTC).isoformat()
        return "\t".join(
            [self.resolution, start, self.scope, self.figure, _fmt(self.truth), _fmt(self.stored)]
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _quantile_ok(stored: float | None, exact: float | None, accuracy: float) -> bool:
    if exact is None or stored is None:
        return exact is None and stored is None
    return abs(stored - exact) <= accuracy * abs(exact) * (1 + 1e-9) + 1e-9


def _nonzero(values: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in values.items() if v}


def compare(truth: Truth, stored: Stored, *, cutoff_us: int, accuracy: float) -> list[Row]:
    """The table's rows; windows ending after ``cutoff_us`` are left out of the rollups."""
    rows: list[Row] = []
    add = rows.append
    # -- raw events
    for table in ("tool_calls", "model_calls", "review_decisions"):
        add(Row(f"{table} rows", len(truth.records[table]), len(stored.records.get(table, ()))))
    differing = sum(len(truth.records[t] ^ stored.records.get(t, set())) for t in truth.records)
    add(Row("event rows: ids missing or unexpected", 0, differing))
    add(Row("event rows dated in absurd years", 0, stored.absurd_records))
    # -- lifecycle
    add(Row("transitions accepted", len(truth.transitions), len(stored.transitions)))
    add(
        Row(
            "transitions: ids missing or unexpected", 0, len(truth.transitions ^ stored.transitions)
        )
    )
    add(
        Row(
            "timeouts synthesized",
            len(truth.timeouts),
            sum(len(v) for v in stored.timeouts.values()),
        )
    )
    for state in _STATES:
        add(
            Row(
                f"timeouts from {state}",
                sum(1 for t in truth.timeouts.values() if t.from_state == state),
                sum(1 for v in stored.timeouts.values() for t in v if t.from_state == state),
            )
        )
    wrong = sum(
        1
        for run in set(truth.timeouts) | set(stored.timeouts)
        if ([truth.timeouts[run]] if run in truth.timeouts else []) != stored.timeouts.get(run, [])
    )
    add(Row("timeouts: wrong run, state or deadline", 0, wrong))
    add(Row("runs completed", len(truth.runs_completed), len(stored.runs_completed)))
    add(Row("runs failed", len(truth.runs_failed), len(stored.runs_failed)))
    add(Row("runs failed: ids differing", 0, len(truth.runs_failed ^ stored.runs_failed)))
    # -- dead letters
    matched: dict[str, set[str]] = {}
    unexpected = 0
    for letter in stored.dead_letters:
        category = truth.dead_letter_category(letter.event_id) if letter.event_id else None
        if category is None:
            unexpected += 1
        else:
            matched.setdefault(category, set()).add(letter.event_id or "")
    for category in sorted(truth.dead_letters):
        add(
            Row(
                f"dead letters: {category}",
                len(truth.dead_letters[category]),
                len(matched.get(category, ())),
            )
        )
    add(Row("dead letters: unexpected", 0, unexpected))
    # -- rollups
    truth_cells = _compared_cells(truth, cutoff_us)
    for resolution in ("1m",):  # the cells below check every window of every resolution
        for figure in FIGURES:
            add(
                Row(
                    f"rollups {resolution} global: {figure}",
                    sum(
                        c.figures[figure]
                        for (r, _, key), c in truth_cells.items()
                        if r == resolution and key == "global"
                    ),
                    sum(
                        c.figures.get(figure, 0)
                        for (r, _, key), c in stored.cells.items()
                        if r == resolution and key == "global"
                    ),
                )
            )
    for resolution in RESOLUTIONS:
        bad_cells: Counter[str] = Counter()
        bad_quantiles: Counter[str] = Counter()
        cells_of_kind: Counter[str] = Counter()
        stored_of_kind: Counter[str] = Counter()
        for key in set(truth_cells) | set(stored.cells):
            if key[0] != resolution:
                continue
            want, got = truth_cells.get(key), stored.cells.get(key)
            kind = (want or got).kind  # type: ignore[union-attr]
            cells_of_kind[kind] += want is not None
            stored_of_kind[kind] += got is not None
            want_f = _nonzero(want.figures) if want else {}
            got_f = _nonzero(got.figures) if got else {}
            want_s = _nonzero(want.state_ms) if want else {}
            got_s = _nonzero(got.state_ms) if got else {}
            if want_f != got_f or want_s != got_s:
                bad_cells[kind] += 1
            exact = want.quantiles() if want else dict.fromkeys(QUANTILES)
            found = got.quantiles if got else dict.fromkeys(QUANTILES)
            if not all(_quantile_ok(found.get(name), exact[name], accuracy) for name in QUANTILES):
                bad_quantiles[kind] += 1
        for kind in _KINDS:
            name = f"rollups {resolution} {kind.lower()}"
            add(Row(f"{name} cells", cells_of_kind[kind], stored_of_kind[kind]))
            add(Row(f"{name} cells wrong", 0, bad_cells[kind]))
            add(Row(f"{name} p50/p95/p99 off by >{accuracy:.0%}", 0, bad_quantiles[kind]))
    add(Row("rollup windows in absurd years", 0, stored.absurd_windows))
    return rows


def _compared_cells(truth: Truth, cutoff_us: int) -> dict[tuple[str, int, str], CellTruth]:
    return {
        key: cell for key, cell in truth.cells.items() if key[1] + RESOLUTIONS[key[0]] <= cutoff_us
    }


def cell_differences(
    truth: Truth, stored: Stored, *, cutoff_us: int, accuracy: float
) -> list[CellDifference]:
    """Every differing figure of every compared rollup cell, by resolution, window, scope.

    A figure is a count (exact), a state's dwell (``state_ms:<STATE>``, exact) or a
    latency quantile (within ``accuracy`` of the exact one).
    """
    wanted = _compared_cells(truth, cutoff_us)
    out: list[CellDifference] = []
    for key in sorted(set(wanted) | set(stored.cells)):
        resolution, start, scope = key
        want, got = wanted.get(key), stored.cells.get(key)
        want_f = _nonzero(want.figures) if want else {}
        got_f = _nonzero(got.figures) if got else {}
        want_s = {f"state_ms:{k}": v for k, v in (_nonzero(want.state_ms) if want else {}).items()}
        got_s = {f"state_ms:{k}": v for k, v in (_nonzero(got.state_ms) if got else {}).items()}
        for name in sorted(set(want_f) | set(got_f) | set(want_s) | set(got_s)):
            a = want_f.get(name, want_s.get(name, 0))
            b = got_f.get(name, got_s.get(name, 0))
            if a != b:
                out.append(CellDifference(resolution, start, scope, name, a, b))
        exact = want.quantiles() if want else dict.fromkeys(QUANTILES)
        found = got.quantiles if got else dict.fromkeys(QUANTILES)
        for name in QUANTILES:
            if not _quantile_ok(found.get(name), exact[name], accuracy):
                out.append(
                    CellDifference(resolution, start, scope, name, exact[name], found.get(name))
                )
    return out


def write_cell_differences(path: Path, found: Iterable[CellDifference]) -> int:
    """Write ``found`` as tab-separated lines (with a header); the number of lines written."""
    lines = [d.line() for d in found]
    header = "resolution\twindow_start\tscope\tfigure\ttruth\tstored"
    path.write_text("\n".join([header, *lines]) + "\n")
    return len(lines)
