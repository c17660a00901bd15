"""``python -m bench`` (``make bench``): every figure beside a baseline from the same run.

Starts its own broker on free ports in a scratch folder (the jar cache is
shared), measures, prints a table, writes ``bench-results/bench.json`` and,
with ``--chart``, a PNG: each figure beside its baseline and peer, timelines as lines
(needs matplotlib).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from agentstream.core.config import load_settings
from agentstream.devtools.localstack.testing import temporary_broker
from bench._figures import (
    emit_overhead,
    end_to_end_latency,
    producer_throughput,
    redaction,
    sink_throughput,
    soak_throughput,
    worker_rebalance,
    worker_restart,
    worker_scale,
    worker_throughput,
)
from bench._harness import BenchContext, Figure, render, write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events per throughput run")
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench.json"))
    parser.add_argument("--chart", type=Path, default=None, help="also draw a PNG here")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--peer-python",
        type=Path,
        default=Path(".venv-peers/bin/python"),
        help="the python of the peers' venv (Quix Streams; make bench keeps it)",
    )
    args = parser.parse_args(argv)
    events = 5_000 if args.quick else args.events
    console = Console()
    settings = load_settings()
    local = settings.local_kafka
    cache = (local.cache_dir or local.home).expanduser().resolve()
    local = local.model_copy(update={"cache_dir": cache})
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="agentstream-bench-") as scratch:
        with console.status("starting a broker for the bench"):
            broker_cm = temporary_broker(Path(scratch) / "kafka", local)
            broker = broker_cm.__enter__()
        try:
            ctx = BenchContext(
                bootstrap=broker.bootstrap,
                workdir=Path(scratch),
                events=events,
                peer_python=args.peer_python,
                broker_pid=broker.pid,
            )
            steps = (
                ("emit overhead", emit_overhead),
                ("redaction", redaction),
                ("producer throughput", producer_throughput),
                ("sink throughput", sink_throughput),
                ("worker throughput", worker_throughput),
                ("worker restart", worker_restart),
                ("worker scale-out", worker_scale),
                ("worker rebalance", worker_rebalance),
                ("end-to-end latency", end_to_end_latency),
                ("soak throughput", soak_throughput),
            )
            for title, step in steps:
                with console.status(f"measuring {title}"):
                    figures.extend(step(ctx))
                console.print(f"[green]✓[/] {title}")
        finally:
            broker_cm.__exit__(None, None, None)
    render(figures)
    write_json(args.out, figures, ctx.timeline)
    console.print(f"wrote {args.out}")
    if args.chart is not None:
        from bench._chart import draw

        draw(figures, ctx.timeline, args.chart)
        console.print(f"wrote {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
