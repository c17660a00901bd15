"""`agentstream worker`: processors, the ClickHouse sink and alert delivery in one process.

The process owns the embedded ClickHouse folder while it runs; analysts reach
it through the worker's web port (``/analyst/query``, ``/analyst/report``).
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from agentstream.core.config import Settings, load_settings

if TYPE_CHECKING:
    from agentstream.sinks.clickhouse import ClickHouseBackend

__all__ = ["register", "run_worker"]

log = logging.getLogger("agentstream.worker")


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


@contextmanager
def _sink(settings: Settings, backend: ClickHouseBackend) -> Iterator[None]:
    from agentstream.sinks.consumer import SinkWorker

    sink = SinkWorker(settings, backend=backend)
    sink.start()
    log.info("ClickHouse sink consuming %s", ", ".join(sink.topics))
    try:
        yield
    finally:
        sink.stop()
        if sink.error is not None:
            log.error("the ClickHouse sink failed: %s", sink.error)


@contextmanager
def _alert_delivery(settings: Settings) -> Iterator[None]:
    from agentstream.sinks.alerting import AlertDispatcher, Notifier, build_channels

    notifier = Notifier(build_channels(settings.alerts), settings.alerts)
    dispatcher = AlertDispatcher(settings, notifier)
    stop = threading.Event()
    thread = threading.Thread(
        target=dispatcher.run, args=(stop,), name="agentstream-alerts", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        dispatcher.close()
        notifier.close(5)


def run_worker(settings: Settings, *, sink: bool = True, alerts: bool = True) -> int:
    """Run until stopped; returns the exit code."""
    from agentstream.core.telemetry import configure_telemetry
    from agentstream.core.topics import ensure_topics
    from agentstream.processors.engine import run_processors
    from agentstream.sinks.analyst import handle_analyst_request
    from agentstream.sinks.clickhouse import open_backend

    telemetry = configure_telemetry(settings.telemetry)
    ensure_topics(
        settings.kafka.bootstrap_servers,
        settings.topics.all().values(),
        partitions=settings.kafka.partitions,
        replication=settings.kafka.replication_factor,
        client_config=settings.kafka.confluent_config(),
    )
    with ExitStack() as stack:
        stack.callback(telemetry.shutdown)
        backend = open_backend(settings.clickhouse)
        stack.callback(backend.close)
        if sink:
            stack.enter_context(_sink(settings, backend))
        if alerts:
            stack.enter_context(_alert_delivery(settings))
        token = settings.worker.query_token
        analyst = None
        if token is not None:
            secret = token.get_secret_value()

            def analyst(path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
                return handle_analyst_request(path, headers, body, backend=backend, token=secret)

        page = telemetry.metrics_page if telemetry.registry is not None else None
        return run_processors(settings, analyst=analyst, metrics_page=page)
