"""What clients ask on their own when they connect, answered from a fixed table.

clickhouse-connect runs ``SELECT version(), timezone()`` and reads
``system.settings`` when it connects; SQL clients and Grafana list databases
and tables. Those statements are matched here (after parsing and
re-rendering, so spacing, case and comments do not matter) and answered by a
fixed query of ours — ``system.*`` stays closed to analysts. The settings
table lists the limits of the key's role, all read-only, so clients neither
try to change them nor send settings the interface would refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from agentstream.core.config import AnalystSettings
from agentstream.sinks.analyst._checker import readable_tables
from agentstream.sinks.analyst._keys import Principal

__all__ = ["HANDSHAKE_QUERIES", "handshake_answer"]

_DIALECT = "clickhouse"
_MAX_HANDSHAKE_CHARS = 1000

#: the statements answered from the fixed table (as clients send them)
HANDSHAKE_QUERIES = (
    "SELECT version(), timezone()",
    "SELECT version()",
    "SELECT timezone()",
    "SELECT currentDatabase()",
    "SELECT name, value, readonly FROM system.settings LIMIT 10000",
    "SELECT name FROM system.databases",
    "SHOW DATABASES",
    "SHOW TABLES",
)


def _string(value: str) -> str:
    return exp.Literal.string(value).sql(dialect=_DIALECT)


def _canonical(sql: str) -> tuple[str, str | None] | None:
    """``sql`` re-rendered without comments and FORMAT, and the FORMAT; None if unparsable."""
    if len(sql) > _MAX_HANDSHAKE_CHARS:  # handshake queries are short; parsing is not free
        return None
    try:
        statements = [
            s
            for s in sqlglot.parse(sql, read=_DIALECT)
            if s is not None and not isinstance(s, exp.Semicolon)
        ]
    except (SqlglotError, RecursionError):
        return None
    if len(statements) != 1:
        return None
    tree = statements[0]
    fmt = None
    if isinstance(tree, exp.Select) and tree.args.get("format") is not None:
        fmt = tree.args["format"].name
        tree.set("format", None)
    if isinstance(tree, exp.Command):
        rest = tree.expression.name if isinstance(tree.expression, exp.Literal) else ""
        return " ".join([str(tree.this), *rest.split()]).upper(), fmt
    return tree.sql(dialect=_DIALECT, comments=False, identify=True), fmt


def _settings_answer(settings: AnalystSettings, role: str) -> str:
    limits = settings.limits(role)
    rows = [
        ("readonly", "1"),
        ("max_execution_time", f"{limits.max_execution_time_s:g}"),
        ("max_result_rows", str(limits.max_result_rows)),
        ("max_result_bytes", str(limits.max_result_bytes)),
        ("result_overflow_mode", "throw"),
        ("max_memory_usage", str(limits.max_memory_usage)),
        ("max_threads", str(limits.max_threads)),
    ]
    values = ", ".join(f"({_string(n)}, {_string(v)}, 1)" for n, v in rows)
    return (
        "SELECT name, value, readonly FROM "
        f"values('name String, value String, readonly UInt8', {values})"
    )


def _names(names: list[str]) -> str:
    items = ", ".join(_string(n) for n in names)
    return f"SELECT arrayJoin(CAST([{items}] AS Array(String))) AS name"


def _answers(
    principal: Principal, settings: AnalystSettings, database: str, existing: frozenset[str]
) -> Mapping[str, Callable[[], str]]:
    tables = [t for t in readable_tables(principal.role) if t in existing]
    return {
        "SELECT version(), timezone()": lambda: "SELECT version(), timezone()",
        "SELECT version()": lambda: "SELECT version()",
        "SELECT timezone()": lambda: "SELECT timezone()",
        "SELECT currentDatabase()": lambda: f"SELECT {_string(database)} AS `currentDatabase()`",
        "SELECT name, value, readonly FROM system.settings LIMIT 10000": lambda: _settings_answer(
            settings, principal.role
        ),
        "SELECT name FROM system.databases": lambda: _names([database]),
        "SHOW DATABASES": lambda: _names([database]),
        "SHOW TABLES": lambda: _names(tables),
    }


_CANONICAL: dict[str, str] = {}


def _canonical_of(query: str) -> str:
    if query not in _CANONICAL:
        parsed = _canonical(query)
        if parsed is None:  # pragma: no cover - the table above parses
            raise ValueError(f"handshake query does not parse: {query}")
        _CANONICAL[query] = parsed[0]
    return _CANONICAL[query]


def handshake_answer(
    sql: str,
    principal: Principal,
    settings: AnalystSettings,
    *,
    database: str,
    existing: frozenset[str],
) -> tuple[str, str | None] | None:
    """``(our SQL, the FORMAT asked for)`` when ``sql`` is a handshake query, else None."""
    parsed = _canonical(sql)
    if parsed is None:
        return None
    canonical, fmt = parsed
    for query, answer in _answers(principal, settings, database, existing).items():
        if _canonical_of(query) == canonical:
            return answer(), fmt
    return None
