"""`agentstream alerts`: firing and recent alerts, rules, test notifications, the dispatcher.

* ``agentstream alerts [--firing] [--since 24h] [--limit 50] [--source auto|clickhouse|kafka]``
  lists what is firing now and the recent state changes (ClickHouse ``alerts``
  table; ``auto`` falls back to the alerts topic when the database cannot be read);
* ``agentstream alerts rules [--rules FILE]`` validates a rule file and lists its rules;
* ``agentstream alerts test RULE`` sends a test notification through the rule's channels;
* ``agentstream alerts dispatch`` delivers Alert events from the topic to their channels.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentstream.core.errors import AgentstreamError, ConfigError

if TYPE_CHECKING:
    from agentstream.core.config import Settings
    from agentstream.processors.alerts import RuleSet
    from agentstream.schemas import Alert

__all__ = ["register"]

_SOURCES = ("auto", "clickhouse", "kafka")
_MESSAGE_CHARS = 120
#: terminal columns from which the list shows each alert's message
_WIDE = 140


def _since(text: str) -> float:
    from agentstream.core.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--since: {exc}") from exc


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


def _logging() -> None:
    """Show the log channel and delivery problems (unless logging is configured already)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def _rules(settings: Settings, path: Path | None) -> RuleSet:
    from agentstream.processors.alerts import known_channels, load_rules, rules_from_settings

    if path is None:
        return rules_from_settings(settings)
    return load_rules(
        path,
        known_channels=known_channels(settings.alerts),
        resolutions=settings.rollups.resolutions,
    )


# -- list ------------------------------------------------------------------------------------


def _read(settings: Settings, source: str, since: datetime, limit: int) -> tuple[Any, ...]:
    """(recent, firing, where) from ClickHouse or the topic."""
    from agentstream.sinks.alerting import (
        alerts_from_clickhouse,
        alerts_from_topic,
        firing,
        firing_from_clickhouse,
    )

    if source in ("auto", "clickhouse"):
        try:
            from agentstream.sinks.clickhouse import open_backend

            backend = open_backend(settings.clickhouse)
            try:
                recent = alerts_from_clickhouse(backend, since=since, limit=limit)
                live = firing_from_clickhouse(backend)
            finally:
                backend.close()
            return recent, live, "ClickHouse table alerts"
        except AgentstreamError as exc:
            if source == "clickhouse":
                raise
            _console(stderr=True).print(
                f"ClickHouse unavailable ({exc}); reading the alerts topic", style="yellow"
            )
    everything = alerts_from_topic(settings)
    recent = [a for a in reversed(everything) if a.fired_at >= since][:limit]
    return recent, firing(everything), f"topic {settings.topics.name('alerts')}"


def _value(alert: Alert, value: float) -> str:
    from agentstream.processors.alerts import format_value, resolve_metric

    try:
        return format_value(resolve_metric(alert.metric), value)
    except KeyError:
        return f"{value:g}"


def _table(title: str, alerts: list[Alert], width: int) -> Any:
    """The alerts as a table; the message column only when the terminal is wide enough."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("fired at (UTC)", "state", "severity", "rule", "scope", "value"):
        table.add_column(column, overflow="fold")
    with_message = width >= _WIDE
    if with_message:
        table.add_column("message", overflow="fold", ratio=1)
    styles = {"CRITICAL": "bold red", "WARNING": "yellow", "INFO": "cyan"}
    for a in alerts:
        message = a.message if len(a.message) <= _MESSAGE_CHARS else a.message[:117] + "..."
        cells = [
            a.fired_at.strftime("%Y-%m-%d %H:%M:%S"),
            a.state.value,
            a.severity.value,
            a.rule_id,
            a.scope_key,
            f"{_value(a, a.value)} {a.comparator} {_value(a, a.threshold)}",
        ]
        table.add_row(
            *cells,
            *([message] if with_message else []),
            style=styles.get(a.severity.value, "") if a.state.value == "FIRING" else "green",
        )
    return table


def _list(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.alerting import webhook_payload

    settings = get_settings()
    since = datetime.now(UTC) - timedelta(seconds=args.since)
    recent, live, where = _read(settings, args.source, since, args.limit)
    if args.fmt == "json":
        doc = {"firing": [webhook_payload(a) for a in live]}
        if not args.firing:
            doc["recent"] = [webhook_payload(a) for a in recent]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    out = _console()
    out.print(_table(f"Firing now ({len(live)}) — {where}", live, out.width))
    if not args.firing:
        title = f"Recent state changes ({len(recent)}, newest first)"
        out.print(_table(title, recent, out.width))
    return 0


# -- rules / test ----------------------------------------------------------------------------


def _list_rules(args: argparse.Namespace) -> int:
    from rich.table import Table

    from agentstream.core.config import get_settings
    from agentstream.processors.alerts import format_value

    rules = _rules(get_settings(), args.rules)
    table = Table(title=f"{len(rules)} rule(s) in {rules.source}", title_justify="left")
    for column in ("id", "metric", "scope", "res.", "condition", "for", "min", "cooldown"):
        table.add_column(column)
    table.add_column("severity")
    table.add_column("channels")
    for r in rules:
        table.add_row(
            r.id + ("" if r.enabled else " (disabled)"),
            r.metric,
            r.scope.describe(),
            r.resolution,
            f"{r.comparator} {format_value(r.metric_info, r.threshold)}",
            str(r.for_windows),
            str(r.min_samples),
            f"{r.cooldown_s:g}s",
            r.severity.value,
            ", ".join(r.channels),
        )
    _console().print(table)
    return 0


def _test(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.processors.alerts import sample_alert
    from agentstream.sinks.alerting import Notifier, Outcome, build_channels

    settings = get_settings()
    _logging()
    rules = _rules(settings, args.rules)
    rule = rules.get(args.rule)
    if rule is None:
        known = ", ".join(r.id for r in rules) or "none"
        raise ConfigError(f"no rule {args.rule!r} in {rules.source}; rules: {known}")
    alert = sample_alert(rule)
    outcomes: dict[str, Outcome] = {}
    lock = threading.Lock()

    def record(_alert: Alert, channel: str, outcome: Outcome) -> None:
        with lock:
            outcomes[channel] = outcome

    notifier = Notifier(build_channels(settings.alerts), settings.alerts)
    try:
        notifier.deliver(alert, args.channel or None, on_done=record)
        notifier.flush(args.timeout)
        stats = notifier.stats()
    finally:
        notifier.close(timeout=0)
    out = _console()
    failed = 0
    for channel in dict.fromkeys(args.channel or alert.channels):
        outcome = outcomes.get(channel, "timed out")
        detail = ""
        if outcome != "delivered":
            failed += 1
            error = stats[channel].last_error if channel in stats else None
            detail = f" ({error})" if error else " (not configured)" if outcome == "skipped" else ""
        style = "green" if outcome == "delivered" else "red"
        out.print(f"{channel}: {outcome}{detail}", style=style, markup=False)
    return 1 if failed else 0


# -- dispatch --------------------------------------------------------------------------------


def _dispatch(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.alerting import AlertDispatcher, Notifier, build_channels

    settings = get_settings()
    _logging()
    notifier = Notifier(build_channels(settings.alerts), settings.alerts)
    dispatcher = AlertDispatcher(settings, notifier)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    err = _console(stderr=True)
    err.print(
        f"delivering alerts from {dispatcher.topic} to: {', '.join(notifier.channels)} "
        "(Ctrl-C to stop)"
    )
    try:
        dispatcher.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        dispatcher.close(timeout=settings.alerts.delivery_timeout_s)
        notifier.close(timeout=0)
    s = dispatcher.stats
    err.print(
        f"consumed {s.consumed}, dispatched {s.dispatched}, duplicates {s.duplicates}, "
        f"invalid {s.invalid}"
    )
    for name, c in notifier.stats().items():
        err.print(f"  {name}: delivered {c.delivered}, failed {c.failed}, dropped {c.dropped}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alerts`` and its sub-commands."""
    alerts = subparsers.add_parser(
        "alerts",
        help="firing and recent alerts; rules, test notifications, the dispatcher",
        description="Without a sub-command: list the alerts firing now and the recent "
        "state changes.",
    )
    alerts.add_argument("--firing", action="store_true", help="only what is firing now")
    alerts.add_argument(
        "--since", type=_since, default=_since("24h"), help="recent window (15m, 24h, 7d)"
    )
    alerts.add_argument("--limit", type=_positive, default=50, help="most recent changes shown")
    alerts.add_argument(
        "--source",
        choices=_SOURCES,
        default="auto",
        help="ClickHouse, the alerts topic, or ClickHouse falling back to the topic",
    )
    alerts.add_argument("--format", dest="fmt", choices=("table", "json"), default="table")
    alerts.set_defaults(handler=_list)
    sub = alerts.add_subparsers(dest="alerts_command", metavar="SUBCOMMAND")

    rules = sub.add_parser("rules", help="validate a rule file and list its rules")
    rules.add_argument("--rules", type=Path, default=None, help="rule file (default: settings)")
    rules.set_defaults(handler=_list_rules)

    test = sub.add_parser("test", help="send a test notification through a rule's channels")
    test.add_argument("rule", help="rule id")
    test.add_argument("--rules", type=Path, default=None, help="rule file (default: settings)")
    test.add_argument(
        "--channel", action="append", default=None, help="only this channel (repeatable)"
    )
    test.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for delivery")
    test.set_defaults(handler=_test)

    dispatch = sub.add_parser("dispatch", help="deliver Alert events from the topic (foreground)")
    dispatch.set_defaults(handler=_dispatch)
