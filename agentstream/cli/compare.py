"""`agentstream compare` and `agentstream eval report`: differences with their significance.

Both print each side, the difference B - A with its interval, the test and its p-value, and
warn when a side is too small to detect the difference asked for (``--mde``). The statistics
live in :mod:`agentstream.sinks.evaluation`; this module parses options and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentstream.sinks.evaluation import Comparison

__all__ = ["parse_mde", "register", "render"]

_METRICS = ("completion_rate", "error_rate", "override_rate", "p95_latency", "cost_per_run")


def parse_mde(text: str | None, option: str = "--mde") -> float | None:
    """``--mde``: a difference in the metric's unit (``0.02``), or percentage points (``2pp``)."""
    from agentstream.core.errors import QueryRefused

    if text is None:
        return None
    raw = text.strip().lower()
    scale = 0.01 if raw.endswith("pp") else 1.0
    try:
        value = float(raw.removesuffix("pp")) * scale
    except ValueError as exc:
        raise QueryRefused(f"{option}: {text!r} is not a number (0.02, 2pp, 150)") from exc
    if not value > 0:
        raise QueryRefused(f"{option}: must be > 0, not {text!r}")
    return value


def _fmt(value: float | None, unit: str, *, signed: bool = False, diff: bool = False) -> str:
    """A value in its unit; ``diff``: a difference (rates in percentage points)."""
    if value is None:
        return "—"
    sign = "+" if signed else ""
    if unit == "share":
        return f"{value * 100:{sign}.2f} pp" if signed or diff else f"{value * 100:.2f} %"
    if unit == "USD":
        return f"{value:{sign}.6f} $"
    return f"{value:{sign}.1f} ms"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def as_json(result: Comparison) -> dict[str, Any]:
    """A comparison as plain JSON values."""
    from dataclasses import asdict

    data = asdict(result)
    data["underpowered"] = result.power.underpowered if result.power else False
    return data


def render(results: list[Comparison], title: str) -> None:
    """Print ``results`` as a rich table, then the tests, definitions and warnings."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not results:
        return
    first = results[0]
    table = Table(title=title)
    table.add_column("metric")
    table.add_column(f"A = {first.a.label}", justify="right")
    table.add_column(f"B = {first.b.label}", justify="right")
    table.add_column("B - A", justify="right")
    table.add_column(f"{first.confidence:.0%} interval", justify="right")
    table.add_column("p-value", justify="right")
    table.add_column("detectable", justify="right")
    for r in results:
        interval = (
            "—"
            if r.ci_low is None or r.ci_high is None
            else f"[{_fmt(r.ci_low, r.unit, signed=True)}, {_fmt(r.ci_high, r.unit, signed=True)}]"
        )
        detectable = r.power.detectable if r.power else None
        table.add_row(
            r.metric,
            f"{_fmt(r.a.value, r.unit)} (n={r.a.units})",
            f"{_fmt(r.b.value, r.unit)} (n={r.b.units})",
            _fmt(r.difference, r.unit, signed=True),
            interval,
            _p(r.p_value),
            _fmt(detectable, r.unit, diff=True),
        )
    console.print(table)
    for r in results:
        console.print(f"[bold]{r.metric}[/]: {r.test}; unit: {r.definition}", highlight=False)
        if r.power and r.power.mde is not None:
            console.print(
                f"  power {r.power.runs_needed} units per side to detect "
                f"{_fmt(r.power.mde, r.unit, diff=True)}; smaller side has {r.power.runs_have}",
                highlight=False,
            )
        for warning in r.warnings:
            console.print(f"  [yellow]warning:[/] {warning}", highlight=False)
    console.print(
        "detectable: the smallest difference this sample detects at the configured power "
        "(AGENTSTREAM_EVALUATION__POWER)",
        style="dim",
        highlight=False,
    )


def _emit(results: list[Comparison], title: str, as_json_output: bool) -> None:
    if as_json_output:
        sys.stdout.write(json.dumps([as_json(r) for r in results], default=str, indent=2) + "\n")
    else:
        render(results, title)


def _working(what: str) -> Any:
    """A spinner on stderr while the engine and the bootstrap work (a bootstrap of thousands
    of runs takes seconds)."""
    from rich.console import Console

    return Console(stderr=True).status(what)


def _compare(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import connect, parse_time
    from agentstream.sinks.evaluation import METRICS, Population, compare

    settings = get_settings()
    mde = parse_mde(args.mde)
    pop = Population(
        args.by,
        args.a,
        args.b,
        parse_time(args.since, option="--since"),
        parse_time(args.until, option="--until") if args.until else None,
        args.tenant,
        args.agent,
    )
    analyst = connect(settings, args.key)
    try:
        with _working(f"comparing {args.metric}"):
            result = compare(analyst, METRICS[args.metric], pop, settings.evaluation, mde=mde)
    finally:
        analyst.close()
    _emit([result], f"{args.metric} by {args.by}: B - A", args.json)
    return 0


def _eval_report(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import connect, parse_time
    from agentstream.sinks.evaluation import benchmark_report

    settings = get_settings()
    mde: dict[str, float] = {}
    for item in args.mde or ():
        name, _, value = item.partition("=")
        parsed = parse_mde(value, option=f"--mde {name}")
        if parsed is not None:
            mde[name.strip()] = parsed
    analyst = connect(settings, args.key)
    try:
        with _working(f"benchmark {args.suite}"):
            results = benchmark_report(
                analyst,
                settings.evaluation,
                suite=args.suite,
                baseline=args.baseline,
                candidate=args.candidate,
                since=parse_time(args.since, option="--since"),
                until=parse_time(args.until, option="--until") if args.until else None,
                tenant=args.tenant,
                agent=args.agent,
                mde=mde,
            )
    finally:
        analyst.close()
    _emit(results, f"benchmark {args.suite}: candidate B against baseline A", args.json)
    return 0


def _common(parser: argparse.ArgumentParser, since: str) -> None:
    parser.add_argument(
        "--since", default=since, help="start: a duration ago (15m, 24h, 30d) or an ISO time"
    )
    parser.add_argument("--until", default=None, help="end (exclusive); default: no end")
    parser.add_argument("--tenant", default=None, help="only this tenant")
    parser.add_argument("--agent", default=None, help="only this agent_id")
    parser.add_argument(
        "--key",
        default=None,
        help="API key name (secret in AGENTSTREAM_ANALYST__KEY_SECRET); without: the "
        "operator's local access to the embedded folder",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``compare`` and ``eval report``."""
    compare = subparsers.add_parser(
        "compare",
        help="compare two agent versions or models on a metric, with significance",
        description="Compare side B with side A on one metric, the run as the unit: both "
        "sides, the difference B - A with its interval, the test (rates: two-proportion "
        "z-test, ClickHouse proportionsZTest; cost: Welch's t-test, welchTTest; p95 latency: "
        "a seeded bootstrap over runs) and its p-value, and a warning when a side has too "
        "few runs to detect --mde at the configured power.",
    )
    compare.add_argument("--by", choices=("agent_version", "model"), required=True)
    compare.add_argument("--a", required=True, help="side A (the baseline)")
    compare.add_argument("--b", required=True, help="side B (the candidate)")
    compare.add_argument("--metric", choices=_METRICS, required=True)
    compare.add_argument(
        "--mde",
        default=None,
        help="smallest difference that matters, in the metric's unit (rates: 0.02 or 2pp; "
        "p95_latency: ms; cost_per_run: USD); warns when the sample is too small for it",
    )
    _common(compare, "7d")
    compare.set_defaults(handler=_compare)

    evaluation = subparsers.add_parser(
        "eval",
        help="pre-deployment benchmark results (EvalResult events)",
        description="Pre-deployment benchmarks: agents emit one EvalResult per task "
        "(emitter.eval_result); these commands read them.",
    )
    commands = evaluation.add_subparsers(dest="eval_command", metavar="COMMAND", required=True)
    report = commands.add_parser(
        "report",
        help="accuracy, p50/p95 latency and cost per task: candidate against baseline",
        description="A suite's accuracy, p50/p95 latency and cost per task for the baseline "
        "and the candidate version, each difference with its interval, test and p-value "
        "(the tests of `agentstream compare`; the unit is one task attempt).",
    )
    report.add_argument("--suite", required=True, help="the benchmark suite")
    report.add_argument("--baseline", required=True, help="baseline agent_version (A)")
    report.add_argument("--candidate", required=True, help="candidate agent_version (B)")
    report.add_argument(
        "--mde",
        action="append",
        metavar="METRIC=VALUE",
        help="smallest difference that matters for a metric (accuracy=5pp, p95_latency=100, "
        "cost_per_task=0.001); repeatable",
    )
    _common(report, "90d")
    report.set_defaults(handler=_eval_report)
