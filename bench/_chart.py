"""``bench.png``: each figure as a bar beside its baseline (and peer), timelines as lines.

* One small panel per figure: its bar, the same-run baseline's bar and, when the
  figure has one, the peer's bar (another library doing the same job in the same
  run). The ratios are written on the figure's bar (``x0.31 baseline``, with
  ``x1.20 peer`` under it); the bar is green when the ratio to the baseline reads
  well (``higher_is_better`` decides) and amber otherwise.
* Throughput or latency over time, as lines, only for the series the run recorded
  as a timeline (two points or more of the same value); a single point is a figure,
  already drawn as a bar.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._harness import Figure

__all__ = ["draw", "timelines"]

_COLUMNS = 3
_GOOD, _BAD, _BASE, _PEER = "#2e7d32", "#f9a825", "#90a4ae", "#5c6bc0"


def timelines(timeline: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """series -> value name -> (seconds since the first point, value), for lines only.

    Values recorded once in a series are left out: they are figures, not timelines.
    """
    if not timeline:
        return {}
    start = min(point["t"] for point in timeline)
    series: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for point in timeline:
        for name, value in point.items():
            if name not in ("t", "series") and isinstance(value, int | float):
                series[point["series"]][name].append((point["t"] - start, float(value)))
    lines = {
        title: {name: points for name, points in values.items() if len(points) >= 2}
        for title, values in series.items()
    }
    return {title: values for title, values in lines.items() if values}


def _wrap(text: str, width: int = 34) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)


def _bars(ax: Any, figure: Figure) -> None:
    labels = ["agentstream", "baseline"]
    values = [figure.value, figure.baseline]
    colours = [_GOOD if _reads_well(figure.ratio, figure) else _BAD, _BASE]
    if figure.peer_name:
        labels.append("peer")
        values.append(figure.peer)
        colours.append(_PEER)
    finite = [v if math.isfinite(v) else 0.0 for v in values]
    bars = ax.bar(labels, finite, color=colours)
    note = f"x{figure.ratio:.2f} baseline"
    if figure.peer_name and figure.peer:
        note += f"\nx{figure.value / figure.peer:.2f} peer"
    top = max(finite) or 1.0
    ax.set_ylim(0, top * 1.35)
    ax.text(
        bars[0].get_x() + bars[0].get_width() / 2,
        finite[0] + top * 0.03,
        note,
        ha="center",
        va="bottom",
        fontsize=7,
        fontweight="bold",
    )
    ax.set_title(_wrap(figure.name), fontsize=7)
    ax.set_ylabel(figure.unit, fontsize=7)
    ax.tick_params(labelsize=6)
    legend = f"baseline: {figure.baseline_name}"
    if figure.peer_name:
        legend += f"\npeer: {figure.peer_name}"
    wrapped = "\n".join(_wrap(line, 48) for line in legend.splitlines())
    ax.text(0.02, 0.98, wrapped, transform=ax.transAxes, fontsize=5, va="top")
    ax.grid(axis="y", alpha=0.3)


def _reads_well(ratio: float, figure: Figure) -> bool:
    return ratio >= 1 if figure.higher_is_better else ratio <= 1


def draw(figures: Sequence[Figure], timeline: list[dict[str, Any]], path: Path) -> None:
    """Draw every figure as bars and every timeline as lines into one PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = timelines(timeline)
    if not figures and not lines:
        raise ValueError("nothing to draw: no figure and no timeline")
    bar_rows = math.ceil(len(figures) / _COLUMNS)
    rows = bar_rows + len(lines)
    fig = plt.figure(figsize=(4.2 * _COLUMNS, 2.9 * max(rows, 1)))
    grid = fig.add_gridspec(max(rows, 1), _COLUMNS)
    for i, figure in enumerate(figures):
        _bars(fig.add_subplot(grid[i // _COLUMNS, i % _COLUMNS]), figure)
    for row, (title, values) in enumerate(sorted(lines.items()), start=bar_rows):
        ax = fig.add_subplot(grid[row, :])
        for name, points in values.items():
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=name, linewidth=1.2)
        ax.set_title(f"{title} over time", fontsize=8)
        ax.set_xlabel("seconds into the bench", fontsize=7)
        ax.legend(loc="best", fontsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
