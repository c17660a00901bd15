"""`agentstream demo`: the whole local stack with simulated agents and a scripted incident."""

from __future__ import annotations

import argparse
from pathlib import Path

from agentstream.cli._demo import DemoOptions

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo``."""
    defaults = DemoOptions()
    demo = subparsers.add_parser(
        "demo",
        help="local broker + embedded ClickHouse + worker + simulated agents, live",
        description=(
            "Start the local broker and a worker, run simulated agents with an error-rate "
            "spike on one tool and a latency spike on one agent version, show rollups and "
            "alerts live, then print a summary from ClickHouse."
        ),
    )
    demo.add_argument("--duration", type=float, default=defaults.duration_s, metavar="SECONDS")
    demo.add_argument("--rate", type=float, default=defaults.runs_per_s, metavar="RUNS_PER_S")
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument("--home", type=Path, default=defaults.home, help="where the demo keeps data")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from agentstream.cli._demo import run_demo

    return run_demo(
        DemoOptions(duration_s=args.duration, runs_per_s=args.rate, seed=args.seed, home=args.home)
    )
