"""`agentstream worker`: processors, the ClickHouse sink and alert delivery in one process.

The process owns the embedded ClickHouse folder while it runs; analysts reach
it through the worker's web port (``/analyst/query``, ``/analyst/report``).
"""

from __future__ import annotations

import argparse

from agentstream.core.config import Settings, load_settings

__all__ = ["register", "run_worker"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``worker``."""
    worker = subparsers.add_parser(
        "worker",
        help="run the processors, the ClickHouse sink and alert delivery",
        description=(
            "Run the stream processors (contract gate, lifecycle, rollups, alert rules), the "
            "ClickHouse sink and the alert dispatcher against the configured Kafka and "
            "ClickHouse. Stops cleanly on SIGTERM / Ctrl-C."
        ),
    )
    worker.add_argument("--no-sink", action="store_true", help="do not store into ClickHouse")
    worker.add_argument("--no-alerts", action="store_true", help="do not deliver alerts")
    worker.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="default: telemetry.log_level",
    )
    worker.add_argument(
        "--log-format", choices=("text", "json"), help="default: telemetry.log_format"
    )
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from agentstream.core.logs import configure_logging

    settings = load_settings()
    if args.log_format is not None:
        telemetry = settings.telemetry.model_copy(update={"log_format": args.log_format})
        settings = settings.model_copy(update={"telemetry": telemetry})
    configure_logging(settings.telemetry, level=args.log_level)
    return run_worker(settings, sink=not args.no_sink, alerts=not args.no_alerts)


def run_worker(settings: Settings, *, sink: bool = True, alerts: bool = True) -> int:
    """Run until stopped; returns the exit code (see :class:`agentstream.worker.Worker`)."""
    from agentstream.worker import run_worker as run

    return run(settings, sink=sink, alerts=alerts)
