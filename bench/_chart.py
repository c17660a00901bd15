"""A PNG of the bench's timeline: one panel per series (throughputs, latencies)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["draw"]


def draw(timeline: list[dict[str, Any]], path: Path) -> None:
    """Plot every numeric value of every series against seconds since the first point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not timeline:
        raise ValueError("nothing to draw: the timeline is empty")
    start = min(point["t"] for point in timeline)
    series: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for point in timeline:
        for name, value in point.items():
            if name not in ("t", "series") and isinstance(value, int | float):
                series[point["series"]][name].append((point["t"] - start, float(value)))
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 2.6 * len(series)), squeeze=False)
    for ax, (title, values) in zip(axes[:, 0], sorted(series.items()), strict=True):
        for name, points in values.items():
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("seconds into the bench")
        ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
