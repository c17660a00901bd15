"""Analyst sessions: who asks, what their role allows, and the audit of every question.

Roles:

``admin``
    any read-only query and every report, all tenants, ``query_audit`` included;
``oncall``
    any read-only query except on ``query_audit``; every report, all tenants;
``tenant``
    canned reports only, always scoped to their own tenant (free SQL cannot be
    scoped safely, so it is refused).

Every query and report, refused or failed ones included, is written to
``query_audit`` (who, role, tenant scope, via, when, statement, parameters,
rows, duration, refused, error). If the audit row cannot be written the
result is not returned: no unaudited reads.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from agentstream.core.errors import QueryRefused, StorageError
from agentstream.sinks.analyst._format import to_jsonable
from agentstream.sinks.analyst._guard import check_read_only
from agentstream.sinks.analyst._reports import render_report
from agentstream.sinks.clickhouse import ClickHouseBackend, QueryResult

__all__ = ["AUDIT_COLUMNS", "ROLES", "Analyst", "Identity", "LocalAnalyst", "Role"]

Role = Literal["admin", "oncall", "tenant"]
ROLES: tuple[str, ...] = get_args(Role)

_FORBIDDEN_TABLES: Mapping[str, tuple[str, ...]] = {
    "admin": (),
    "oncall": ("query_audit", "query_audit_dedup"),
    "tenant": (),
}

AUDIT_COLUMNS = (
    "query_id",
    "at",
    "who",
    "role",
    "tenant_scope",
    "via",
    "kind",
    "report",
    "statement",
    "params",
    "rows",
    "duration_ms",
    "refused",
    "error",
)


@dataclass(frozen=True)
class Identity:
    """Who runs a query and as which role (a tenant analyst names their tenant)."""

    who: str
    role: Role = "admin"
    tenant: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise QueryRefused(f"unknown role {self.role!r}; roles: {', '.join(ROLES)}")
        if self.role == "tenant" and not self.tenant:
            raise QueryRefused("the tenant role needs a tenant (--tenant)")
        if not self.who:
            raise QueryRefused("an analyst query needs a name (--as)")


class Analyst(Protocol):
    """Analyst access: free read-only SQL and canned reports, both audited."""

    identity: Identity

    def query(self, sql: str) -> QueryResult:
        """Rows of a read-only query; ``QueryRefused`` for anything else."""
        ...

    def report(
        self,
        name: str,
        *,
        since: dt.datetime,
        until: dt.datetime | None = None,
        tenant: str | None = None,
        bucket_s: int = 60,
    ) -> QueryResult:
        """Rows of canned report ``name``."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class LocalAnalyst:
    """Runs analyst queries on a backend this process holds (direct, or inside the worker)."""

    def __init__(
        self,
        backend: ClickHouseBackend,
        identity: Identity,
        *,
        via: str = "direct",
        owns_backend: bool = False,
    ) -> None:
        self.backend = backend
        self.identity = identity
        self.via = via
        self._owns_backend = owns_backend

    def close(self) -> None:
        if self._owns_backend:
            self.backend.close()

    def query(self, sql: str) -> QueryResult:
        return self._run("query", "", sql, {}, lambda: self._checked(sql))

    def _checked(self, sql: str) -> tuple[str, dict[str, Any]]:
        if self.identity.role == "tenant":
            raise QueryRefused(
                "tenant analysts run canned reports (agentstream report), not free SQL"
            )
        forbidden = _FORBIDDEN_TABLES[self.identity.role]
        return check_read_only(sql, forbidden_tables=forbidden), {}

    def report(
        self,
        name: str,
        *,
        since: dt.datetime,
        until: dt.datetime | None = None,
        tenant: str | None = None,
        bucket_s: int = 60,
    ) -> QueryResult:
        params = {"since": since, "until": until, "tenant": tenant, "bucket_s": bucket_s}

        def prepare() -> tuple[str, dict[str, Any]]:
            scope = tenant
            if self.identity.role == "tenant":
                if tenant is not None and tenant != self.identity.tenant:
                    raise QueryRefused(
                        f"tenant analysts of {self.identity.tenant!r} cannot report on {tenant!r}"
                    )
                scope = self.identity.tenant
            return render_report(name, since=since, until=until, tenant=scope, bucket_s=bucket_s)

        return self._run("report", name, f"report {name}", params, prepare)

    def _run(
        self,
        kind: str,
        report: str,
        statement: str,
        params: Mapping[str, Any],
        prepare: Any,
    ) -> QueryResult:
        started = time.perf_counter()
        at = dt.datetime.now(dt.UTC)
        sql, sql_params = statement, dict(params)
        try:
            sql, sql_params = prepare()
            result = self.backend.query(sql, sql_params or None)
        except QueryRefused as exc:
            self._audit(kind, report, sql, sql_params, at, started, 0, refused=True, error=str(exc))
            raise
        except StorageError as exc:
            self._audit(
                kind, report, sql, sql_params, at, started, 0, refused=False, error=str(exc)
            )
            raise
        self._audit(kind, report, sql, sql_params, at, started, len(result.rows))
        return result

    def _audit(
        self,
        kind: str,
        report: str,
        statement: str,
        params: Mapping[str, Any],
        at: dt.datetime,
        started: float,
        rows: int,
        *,
        refused: bool = False,
        error: str = "",
    ) -> None:
        row = (
            str(uuid.uuid4()),
            at,
            self.identity.who,
            self.identity.role,
            self.identity.tenant or "",
            self.via,
            kind,
            report,
            statement,
            json.dumps({k: to_jsonable(v) for k, v in params.items()}, sort_keys=True),
            rows,
            (time.perf_counter() - started) * 1000.0,
            refused,
            error[:4096],
        )
        try:
            self.backend.insert("query_audit", AUDIT_COLUMNS, [row])
        except StorageError as exc:
            raise StorageError(f"cannot audit the query, so its result is withheld: {exc}") from exc
