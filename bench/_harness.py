"""The bench harness: a stack of its own, figures beside baselines, a table and a JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BenchContext",
    "Figure",
    "machine_busy_s",
    "percentile",
    "process_cpu_s",
    "render",
    "timed_percentiles",
    "write_json",
]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Figure:
    """One measured figure beside the baseline measured in the same run.

    ``higher_is_better`` tells how to read the ratio (figure / baseline). A ``peer``
    (another library doing the same job, same run) is shown beside them when named.
    """

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    higher_is_better: bool
    target: str = ""
    note: str = ""
    peer_name: str = ""
    peer: float = float("nan")

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    @property
    def peer_ratio(self) -> float:
        """figure / peer (NaN without a peer)."""
        return self.value / self.peer if self.peer_name and self.peer else float("nan")


@dataclass
class BenchContext:
    """What every benchmark gets: a broker, a scratch folder, sizes, and a timeline."""

    bootstrap: str
    workdir: Path
    events: int
    #: the peer venv's python (Quix Streams, bench/_quix.py); ``None``: no peer
    peer_python: Path | None = None
    #: the broker's process when the bench started it (its CPU is read from /proc)
    broker_pid: int | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def mark(self, series: str, **values: float) -> None:
        """Record a point for the over-time chart."""
        self.timeline.append({"t": time.time(), "series": series, **values})


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def timed_percentiles(fn: Callable[[], object], n: int) -> tuple[float, float, float]:
    """p50, p99 and mean of ``fn``'s duration in microseconds over ``n`` calls."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        start = clock()
        fn()
        samples.append((clock() - start) / 1000)
    return percentile(samples, 0.5), percentile(samples, 0.99), statistics.fmean(samples)


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...; elapsed()`` → seconds."""
    start = time.perf_counter()
    yield lambda: time.perf_counter() - start


def render(figures: Sequence[Figure]) -> None:
    """Print the table (rich when available)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is in the worker extra
        for f in figures:
            print(f"{f.name}: {f.value:.1f} {f.unit} | {f.baseline_name}: {f.baseline:.1f}")
        return
    table = Table(title="agentstream bench", show_lines=False)
    for column, justify in (
        ("figure", "left"),
        ("value", "right"),
        ("baseline (same run)", "left"),
        ("baseline value", "right"),
        ("ratio", "right"),
        ("peer (same run)", "left"),
        ("x peer", "right"),
        ("target", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for f in figures:
        good = f.ratio >= 1 if f.higher_is_better else f.ratio <= 1
        ratio = f"[{'green' if good else 'yellow'}]x{f.ratio:.2f}[/]"
        table.add_row(
            f.name,
            f"{f.value:,.1f} {f.unit}",
            f.baseline_name,
            f"{f.baseline:,.1f} {f.unit}",
            ratio,
            f"{f.peer_name} {f.peer:,.1f} {f.unit}" if f.peer_name else "",
            f"x{f.peer_ratio:.2f}" if f.peer_name else "",
            f.target,
        )
    Console().print(table)


def write_json(path: Path, figures: Sequence[Figure], timeline: list[dict[str, Any]]) -> None:
    """The table as JSON, for tracking across runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": _cpus(), "node": platform.node()},
        "figures": [asdict(f) | {"ratio": f.ratio, "peer_ratio": f.peer_ratio} for f in figures],
        "timeline": timeline,
    }
    path.write_text(json.dumps(payload, indent=2))


def _cpus() -> int:
    return os.cpu_count() or 0


def process_cpu_s(pid: int) -> float:
    """CPU seconds of process ``pid`` so far, all its threads (0 if it is gone: Linux only)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle so far (0 where /proc/stat is absent)."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    ticks = [int(v) for v in line[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4] - ticks[7]) / _TICK
