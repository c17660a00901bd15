"""`agentstream simulate`: synthetic agents through the real Emitter."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _rate(text: str) -> float:
    value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"not a rate between 0 and 1 (or 0% and 100%): {text}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``simulate``."""
    sim = subparsers.add_parser(
        "simulate",
        help="synthetic agents emitting through the real Emitter",
        description=(
            "Simulate agents: runs through the lifecycle with tool and model calls and human "
            "reviews, with chosen error rates, latencies, invalid transitions and stalls. "
            "Rates take 0.05 or 5%%. The same --seed gives the same events."
        ),
    )
    sim.add_argument("--duration", type=float, default=30.0, metavar="SECONDS")
    sim.add_argument("--events", type=int, default=None, help="stop after this many events")
    sim.add_argument("--rate", type=float, default=20.0, metavar="RUNS_PER_S")
    sim.add_argument("--agents", type=int, default=3)
    sim.add_argument("--versions", default="1.0.0,1.1.0", help="comma-separated")
    sim.add_argument("--tenants", default="acme,globex,initech", help="comma-separated")
    sim.add_argument("--retryable-rate", type=_rate, default=0.02)
    sim.add_argument("--non-retryable-rate", type=_rate, default=0.005)
    sim.add_argument("--timeout-rate", type=_rate, default=0.005)
    sim.add_argument("--latency-median", type=float, default=300.0, metavar="MS")
    sim.add_argument("--latency-p95", type=float, default=1500.0, metavar="MS")
    sim.add_argument("--invalid-rate", type=_rate, default=0.02)
    sim.add_argument("--stall-rate", type=_rate, default=0.01)
    sim.add_argument("--override-rate", type=_rate, default=0.05)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument(
        "--fast", action="store_true", help="emit as fast as possible instead of in real time"
    )
    sim.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from agentstream import Emitter
    from agentstream.core.config import load_settings
    from agentstream.devtools.simulate import Simulation, SimulationConfig, SimulationReport

    if args.latency_p95 < args.latency_median:
        print("agentstream: error: --latency-p95 must be >= --latency-median", file=sys.stderr)
        return 2
    config = SimulationConfig(
        agents=args.agents,
        versions=tuple(v for v in args.versions.split(",") if v),
        tenants=tuple(t for t in args.tenants.split(",") if t),
        runs_per_s=args.rate,
        duration_s=None if args.events and not args.duration else args.duration,
        max_events=args.events,
        retryable_rate=args.retryable_rate,
        non_retryable_rate=args.non_retryable_rate,
        timeout_rate=args.timeout_rate,
        latency_median_ms=args.latency_median,
        latency_p95_ms=args.latency_p95,
        invalid_rate=args.invalid_rate,
        stall_rate=args.stall_rate,
        override_rate=args.override_rate,
        seed=args.seed,
    )
    settings = load_settings()
    try:
        from rich.console import Console
    except ImportError:  # pragma: no cover - rich is in the worker extra
        console = None
    else:
        console = Console(stderr=True)

    def progress(report: SimulationReport) -> None:
        line = f"{report.total:,} events from {report.runs:,} runs in {report.elapsed_s:.0f}s"
        if console is not None:
            console.print(line, end="\r")

    with Emitter(settings) as emitter:
        report = Simulation(config).run(emitter.emit, realtime=not args.fast, on_progress=progress)
        remaining = emitter.flush(30)
        stats = emitter.stats()
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(report.events.items()))
    print(f"sent {report.total:,} events ({kinds}) from {report.runs:,} runs")
    status = ", ".join(f"{n:,} {s}" for s, n in sorted(report.tool_status.items()))
    print(f"tool calls: {status}")
    invalid = ", ".join(f"{n} {kind}" for kind, n in sorted(report.invalid.items())) or "none"
    print(
        f"invalid runs injected: {invalid}; stalled runs: {report.stalled}; "
        f"human overrides: {report.overrides}"
    )
    print(
        f"delivered {stats.delivered:,}, spooled {stats.spooled:,}, still queued {remaining:,} "
        f"to {settings.kafka.bootstrap_servers} (topics {settings.topics.prefix}*)"
    )
    return 0
