"""Running analyst statements: check, scope, limit, run, audit — for one principal.

:class:`AnalystEngine` is shared by the HTTP interface and the local CLI. For
each statement it

1. checks and re-renders it (:func:`check_statement`): one read-only statement
   over the tables the key's role may read, tenant keys scoped to their tenant;
2. appends the role's limits as query SETTINGS the engine enforces
   (``max_execution_time``, ``max_result_rows`` / ``max_result_bytes`` with
   ``result_overflow_mode = 'throw'``, ``max_memory_usage``, ``max_threads``,
   for tenant keys ``additional_table_filters`` on every tenant table, and
   ``readonly = 1`` last);
3. runs it on the reader backend (the embedded engine, or a server connection
   as the read-only analyst user — never the writer);
4. writes one ``query_audit`` row, whatever happened. If the audit row cannot
   be written the result is withheld: no unaudited reads.

Roles (from the key, never from the request): ``admin`` reads every analyst
table and ``query_audit``; ``oncall`` all but ``query_audit``; ``tenant`` the
tables with a ``tenant_id`` column, only its own tenant's rows.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agentstream.core.config import AnalystSettings
from agentstream.core.errors import QueryRefused, StorageError
from agentstream.sinks.analyst._checker import ANALYST_TABLES, CheckedStatement, check_statement
from agentstream.sinks.analyst._format import to_jsonable
from agentstream.sinks.analyst._keys import Principal
from agentstream.sinks.analyst._reports import render_report
from agentstream.sinks.clickhouse import ClickHouseBackend, QueryResult
from agentstream.sinks.clickhouse._embedded import decode_json_compact
from agentstream.sinks.clickhouse._tsv import encode_param

__all__ = ["AUDIT_COLUMNS", "AnalystEngine", "LocalAnalyst", "RawQueryBackend", "RawResult"]

AUDIT_COLUMNS = (
    "query_id",
    "at",
    "who",
    "key_name",
    "role",
    "tenant_scope",
    "via",
    "client",
    "kind",
    "report",
    "statement",
    "statement_run",
    "params",
    "rows",
    "duration_ms",
    "refused",
    "outcome",
    "error",
)

_ENGINE_CODE = re.compile(r"Code: (\d+)\.")
_KNOWN_OBJECTS_TTL_S = 30.0


@runtime_checkable
class RawQueryBackend(Protocol):
    """A backend that returns results rendered by the engine in a named output format."""

    def query_raw(
        self, sql: str, fmt: str, params: Mapping[str, str] | None = None
    ) -> tuple[bytes, int]: ...


@dataclass(frozen=True)
class RawResult:
    """An engine-rendered result: the bytes, their format and the row count (-1: unknown)."""

    body: bytes
    fmt: str
    rows: int
    statement: str


def engine_code(error: BaseException) -> int:
    """The ClickHouse error code in an engine failure's message (1002 UNKNOWN_EXCEPTION)."""
    match = _ENGINE_CODE.search(str(error))
    return int(match.group(1)) if match else 1002


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class AnalystEngine:
    """Checks, limits, runs and audits analyst statements."""

    def __init__(
        self,
        backend: ClickHouseBackend,
        settings: AnalystSettings,
        *,
        reader: RawQueryBackend | None = None,
        tenant_reader: Callable[[Principal], RawQueryBackend] | None = None,
    ) -> None:
        reader = reader if reader is not None else backend  # type: ignore[assignment]
        if not isinstance(reader, RawQueryBackend):
            raise StorageError(f"the {backend.kind} backend cannot run analyst queries")
        #: writes the audit (and, embedded, is the reader too)
        self.backend = backend
        self.reader: RawQueryBackend = reader
        self.settings = settings
        #: server mode: tenant keys run as their own user (row policies); None: ``reader``
        self.tenant_reader = tenant_reader
        #: a server's analyst users are ``readonly = 2`` by profile and may not set readonly
        self.readonly_setting = getattr(reader, "kind", "embedded") != "server"
        self._known: tuple[float, frozenset[str]] | None = None
        self._known_lock = threading.Lock()

    # -- checking --------------------------------------------------------------------------

    def known_objects(self) -> frozenset[str]:
        """Every table and view of the database (a CTE may not shadow one)."""
        with self._known_lock:
            now = time.monotonic()
            if self._known is None or now - self._known[0] > _KNOWN_OBJECTS_TTL_S:
                result = self.backend.query(
                    "SELECT name FROM system.tables WHERE database = {db:String}",
                    {"db": self.backend.database},
                )
                self._known = (now, frozenset(str(r[0]) for r in result.rows))
            return self._known[1]

    def limits_clause(self, principal: Principal) -> str:
        """`` SETTINGS ...``: the role's limits, tenant filters, ``readonly = 1`` last."""
        limits = self.settings.limits(principal.role)
        parts = [
            f"max_execution_time = {limits.max_execution_time_s:g}",
            f"max_result_rows = {limits.max_result_rows}",
            f"max_result_bytes = {limits.max_result_bytes}",
            "result_overflow_mode = 'throw'",
            f"max_memory_usage = {limits.max_memory_usage}",
            f"max_threads = {limits.max_threads}",
        ]
        if principal.role == "tenant" and principal.tenant is not None:
            condition = _quoted(f"tenant_id = {_quoted(principal.tenant)}")
            database = self.backend.database
            filters = [
                f"{_quoted(name)}: {condition}, {_quoted(f'{database}.{name}')}: {condition}"
                for name, roles in sorted(ANALYST_TABLES.items())
                if "tenant" in roles
            ]
            parts.append("additional_table_filters = {" + ", ".join(filters) + "}")
        if self.readonly_setting:
            parts.append("readonly = 1")
        return " SETTINGS " + ", ".join(parts)

    def check(
        self,
        principal: Principal,
        sql: str,
        *,
        allow_format: bool = False,
        allow_params: bool = False,
    ) -> CheckedStatement:
        return check_statement(
            sql,
            principal,
            known_objects=self.known_objects(),
            allow_format=allow_format,
            allow_params=allow_params,
            max_tokens=self.settings.max_statement_words,
        )

    def reader_for(self, principal: Principal) -> RawQueryBackend:
        """The connection ``principal``'s statements run on."""
        if principal.role == "tenant" and self.tenant_reader is not None:
            return self.tenant_reader(principal)
        return self.reader

    # -- running ---------------------------------------------------------------------------

    def execute(
        self,
        principal: Principal,
        sql: str,
        *,
        fmt: str,
        via: str,
        params: Mapping[str, str] | None = None,
        allow_format: bool = False,
        kind: str = "query",
        report: str = "",
        client: str = "",
    ) -> RawResult:
        """Check, limit, run and audit ``sql``; QueryRefused / StorageError are audited too."""
        started = time.perf_counter()
        at = dt.datetime.now(dt.UTC)
        run = ""
        audit: dict[str, Any] = {
            "principal": principal, "via": via, "client": client, "kind": kind,
            "report": report, "received": sql, "params": dict(params or {}),
            "at": at, "started": started,
        }  # fmt: skip
        try:
            checked = self.check(principal, sql, allow_format=allow_format, allow_params=True)
            run = checked.sql + self.limits_clause(principal)
            body, rows = self.reader_for(principal).query_raw(run, checked.fmt or fmt, params)
        except QueryRefused as exc:
            self.audit(**audit, run=run, outcome="refused", error=str(exc))
            raise
        except StorageError as exc:
            self.audit(**audit, run=run, outcome="failed", error=str(exc))
            raise
        self.audit(**audit, run=run, outcome="ok", rows=rows)
        return RawResult(body=body, fmt=checked.fmt or fmt, rows=rows, statement=run)

    def audit(
        self,
        *,
        principal: Principal | None,
        via: str,
        received: str,
        outcome: str,
        at: dt.datetime | None = None,
        started: float | None = None,
        run: str = "",
        kind: str = "query",
        report: str = "",
        params: Mapping[str, Any] | None = None,
        rows: int = 0,
        error: str = "",
        client: str = "",
        key_name: str | None = None,
    ) -> None:
        """Write one ``query_audit`` row; StorageError when it cannot (the result is withheld)."""
        at = at or dt.datetime.now(dt.UTC)
        duration_ms = (time.perf_counter() - started) * 1000.0 if started is not None else 0.0
        name = key_name if key_name is not None else (principal.key if principal else "")
        row = (
            str(uuid.uuid4()),
            at,
            principal.who if principal else (name[:128] or "anonymous"),
            name[:128],
            principal.role if principal else "",
            (principal.tenant or "") if principal else "",
            via,
            client,
            kind,
            report,
            received[:65536],
            run[:65536],
            json.dumps({k: to_jsonable(v) for k, v in (params or {}).items()}, sort_keys=True),
            max(rows, 0),
            duration_ms,
            outcome != "ok" and outcome != "failed",
            outcome,
            error[:4096],
        )
        try:
            self.backend.insert("query_audit", AUDIT_COLUMNS, [row])
        except StorageError as exc:
            raise StorageError(f"cannot audit the query, so its result is withheld: {exc}") from exc


class LocalAnalyst:
    """Analyst queries and reports on a backend this process holds, as one principal."""

    def __init__(
        self,
        engine: AnalystEngine,
        principal: Principal,
        *,
        via: str = "direct",
        owns_backend: bool = False,
    ) -> None:
        self.engine = engine
        self.principal = principal
        self.via = via
        self._owns_backend = owns_backend

    def close(self) -> None:
        if self._owns_backend:
            self.engine.backend.close()

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Rows of one checked, read-only statement run for this principal."""
        return self._run(sql, params)

    def _run(
        self, sql: str, params: Mapping[str, Any] | None, *, kind: str = "query", report: str = ""
    ) -> QueryResult:
        text_params = {k: encode_param(v) for k, v in (params or {}).items()}
        result = self.engine.execute(
            self.principal,
            sql,
            fmt="JSONCompact",
            via=self.via,
            params=text_params or None,
            kind=kind,
            report=report,
        )
        return decode_json_compact(result.body)

    def report(
        self,
        name: str,
        *,
        since: dt.datetime,
        until: dt.datetime | None = None,
        tenant: str | None = None,
        bucket_s: int = 60,
    ) -> QueryResult:
        """Rows of canned report ``name`` (tenant keys: always their own tenant)."""
        scope = tenant
        try:
            if self.principal.role == "tenant":
                if tenant is not None and tenant != self.principal.tenant:
                    raise QueryRefused(
                        f"tenant key {self.principal.key!r} ({self.principal.tenant}) "
                        f"cannot report on {tenant!r}"
                    )
                scope = self.principal.tenant
            sql, params = render_report(
                name, since=since, until=until, tenant=scope, bucket_s=bucket_s
            )
        except QueryRefused as exc:
            self.engine.audit(
                principal=self.principal, via=self.via, received=f"report {name}",
                outcome="refused", kind="report", report=name, error=str(exc),
            )  # fmt: skip
            raise
        return self._run(sql, params, kind="report", report=name)
