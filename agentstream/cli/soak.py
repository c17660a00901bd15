"""`agentstream soak`: the real worker under faults, every stored figure against the truth."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``soak``."""
    from agentstream.devtools.soak.population import FAULTS

    soak = subparsers.add_parser(
        "soak",
        help="fault-injection soak: the real worker, broker and ClickHouse against a truth",
        description=(
            "Generate a seeded population of agent runs (with invalid transitions, stalled "
            "runs, errors, latencies), run the real worker against a real broker and the "
            "embedded ClickHouse while injecting faults, then compare everything stored with "
            "a truth computed independently of the engine. Prints one table (figure, truth, "
            "stored, difference); exits 1 on any difference. Faults: " + ", ".join(FAULTS) + "."
        ),
    )
    soak.add_argument(
        "--duration",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="length of the live traffic (default 120)",
    )
    soak.add_argument("--seed", type=int, default=7)
    soak.add_argument(
        "--faults", default=",".join(FAULTS), help="comma-separated, or 'none' (default: all)"
    )
    soak.add_argument(
        "--workers", type=int, default=1, help="worker processes (the first one runs the sink)"
    )
    soak.add_argument("--rate", type=float, default=3.0, metavar="RUNS_PER_S")
    soak.add_argument(
        "--late-by",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="how far behind the stream the late producer's events are dated",
    )
    soak.add_argument(
        "--bootstrap",
        default=None,
        help="use this broker (default: start one in a temporary folder)",
    )
    soak.add_argument(
        "--home",
        type=Path,
        default=None,
        help="folder for the broker, ClickHouse, logs and report.json",
    )
    soak.add_argument("--keep", action="store_true", help="keep the temporary folder")
    soak.add_argument("--no-display", action="store_true", help="no live progress display")
    soak.set_defaults(handler=_soak)


def _soak(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from agentstream.devtools.soak import SoakOptions, cleanup, run_soak

    faults = (
        frozenset()
        if args.faults.strip() == "none"
        else frozenset(f.strip() for f in args.faults.split(",") if f.strip())
    )
    options = SoakOptions(
        duration_s=args.duration,
        seed=args.seed,
        faults=faults,
        workers=args.workers,
        bootstrap=args.bootstrap,
        home=args.home,
        keep=args.keep,
        runs_per_s=args.rate,
        late_by_s=args.late_by,
    )
    console = Console()
    result = run_soak(options, console=console, display=not args.no_display)
    table = Table(title=f"agentstream soak: seed {args.seed}, faults {args.faults}")
    for column in ("figure", "truth", "stored", "difference"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for row in result.rows:
        style = None if row.ok else "bold red"
        diff = "" if row.ok else f"{row.difference:+,}"
        table.add_row(row.figure, f"{row.truth:,}", f"{row.stored:,}", diff, style=style)
    console.print(table)
    wrong = sum(not row.ok for row in result.rows)
    console.print(
        f"{result.sent:,} messages in {result.elapsed_s:,.0f}s "
        f"({result.events_per_s:,.1f} events/s from the first emit to drained); "
        + ("[green]no difference[/]" if not wrong else f"[red]{wrong} figures differ[/]")
        + f"; details in {result.home / 'report.json'}"
    )
    cleanup(result, options)
    return 0 if result.ok else 1
