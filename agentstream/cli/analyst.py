"""`agentstream migrate`, `query` and `report`: analyst access to ClickHouse."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

__all__ = ["register"]

_FORMATS = ("table", "csv", "json")
_ROLES = ("admin", "oncall", "tenant")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER", "unknown")


def _add_identity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as", dest="who", default=None, help="who is asking (default: the OS user)"
    )
    parser.add_argument(
        "--role",
        choices=_ROLES,
        default="admin",
        help="admin: everything; oncall: all but the audit; tenant: own tenant's reports only",
    )
    parser.add_argument(
        "--format", dest="fmt", choices=_FORMATS, default="table", help="output format"
    )


def _migrate(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.clickhouse import load_migrations, migrate, open_backend, render

    settings = get_settings()
    if args.print_sql:
        for migration in load_migrations():
            print(f"-- {migration.version:04d}_{migration.name}")
            print(render(migration.text, settings.retention, settings.sink))
        return 0
    backend = open_backend(settings.clickhouse)
    try:
        report = migrate(backend, settings)
    finally:
        backend.close()
    where = (
        settings.clickhouse.path
        if settings.clickhouse.backend == "embedded"
        else f"{settings.clickhouse.host}:{settings.clickhouse.port}"
    )
    applied = ", ".join(f"{v:04d}" for v in report.applied) or "none"
    print(
        f"migrations applied: {applied}; already applied: {len(report.already_applied)} ({where})"
    )
    if report.retention_updated:
        print(f"retention/settings recorded for: {', '.join(report.retention_updated)}")
    return 0


def _query(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import Identity, connect, format_result

    identity = Identity(who=args.who or _who(), role=args.role, tenant=args.tenant)
    analyst = connect(get_settings(), identity)
    try:
        result = analyst.query(args.sql)
    finally:
        analyst.close()
    sys.stdout.write(format_result(result, args.fmt))
    return 0


def _report(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import (
        REPORTS,
        Identity,
        connect,
        duration_option,
        format_result,
        parse_time,
    )

    if args.name is None:
        width = max(len(name) for name in REPORTS)
        for name, report in REPORTS.items():
            print(f"{name:<{width}}  {report.title}")
        return 0
    since = parse_time(args.since, option="--since")
    until = parse_time(args.until, option="--until") if args.until else None
    bucket_s = round(duration_option(args.bucket, option="--bucket")) if args.bucket else 60
    scope = args.tenant if args.role != "tenant" else None
    identity = Identity(who=args.who or _who(), role=args.role, tenant=args.tenant)
    analyst = connect(get_settings(), identity)
    try:
        result = analyst.report(
            args.name, since=since, until=until, tenant=scope, bucket_s=bucket_s
        )
    finally:
        analyst.close()
    title = REPORTS[args.name].title if args.name in REPORTS else args.name
    sys.stdout.write(format_result(result, args.fmt, title=title))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``migrate``, ``query`` and ``report``."""
    migrate = subparsers.add_parser(
        "migrate",
        help="create / update the ClickHouse tables (idempotent)",
        description="Apply pending migrations from sinks/migrations and the current retention "
        "settings; record them in schema_migrations.",
    )
    migrate.add_argument(
        "--print", dest="print_sql", action="store_true", help="print the rendered DDL only"
    )
    migrate.set_defaults(handler=_migrate)

    query = subparsers.add_parser(
        "query",
        help="run a read-only SQL query (audited)",
        description="Run one read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN); "
        "anything else is refused. Every query is written to query_audit.",
    )
    query.add_argument("sql", help="the SQL statement")
    query.add_argument("--tenant", default=None, help="your tenant (role tenant)")
    _add_identity(query)
    query.set_defaults(handler=_query)

    report = subparsers.add_parser(
        "report",
        help="run a canned report (audited); without NAME: list them",
        description="Canned reports over the deduplicated tables. Run without NAME for the list.",
    )
    report.add_argument("name", nargs="?", default=None, help="report name")
    report.add_argument(
        "--since", default="24h", help="start: a duration ago (15m, 24h, 7d) or an ISO time"
    )
    report.add_argument("--until", default=None, help="end (exclusive); default: no end")
    report.add_argument("--tenant", default=None, help="only this tenant (tenant role: yours)")
    report.add_argument(
        "--bucket", default=None, help="time bucket of the qps report (e.g. 10s, 1m, 1h)"
    )
    _add_identity(report)
    report.set_defaults(handler=_report)
