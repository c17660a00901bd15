"""bench.png: figures become bars, and only real timelines become lines."""

from __future__ import annotations

from pathlib import Path

from bench._chart import draw, timelines
from bench._harness import Figure


def test_single_points_are_figures_not_timelines() -> None:
    timeline = [
        {"t": 10.0, "series": "sink", "rows_per_s": 1.0, "raw_rows_per_s": 2.0},
        {"t": 11.0, "series": "e2e", "latency_ms": 3.0},
        {"t": 12.5, "series": "e2e", "latency_ms": 5.0},
        {"t": 13.0, "series": "worker", "events_per_s": 7.0},
        {"t": 14.0, "series": "worker", "quix_events_per_s": 2.0},
    ]
    lines = timelines(timeline)
    assert lines == {"e2e": {"latency_ms": [(1.0, 3.0), (2.5, 5.0)]}}


def test_a_figure_with_a_peer_reports_both_ratios(tmp_path: Path) -> None:
    figure = Figure("w", 8.0, "events/s", "decode only", 16.0, True, peer_name="q", peer=2.0)
    assert figure.ratio == 0.5
    assert figure.peer_ratio == 4.0
    alone = Figure("s", 1.0, "rows/s", "raw", 2.0, True)
    assert alone.peer_ratio != alone.peer_ratio  # NaN without a peer
    out = tmp_path / "bench.png"
    draw([figure, alone], [], out)
    assert out.read_bytes().startswith(b"\x89PNG")
