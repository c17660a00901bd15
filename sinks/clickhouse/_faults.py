"""TEST HOOK: ClickHouse "unavailable" on demand, for fault injection (``agentstream soak``).

The embedded engine lives inside the worker process, so a test cannot stop it from
outside. With ``clickhouse.fault_file`` set, :func:`~agentstream.sinks.clickhouse.open_backend`
wraps the backend in :class:`FaultInjectingBackend`: while that file exists every insert
raises :class:`~agentstream.core.errors.StorageError` (no ClickHouse error code: the
sink takes it for an outage and retries with backoff, as it would for a server that
is down). Queries, commands and everything else pass through. Off by default; not
meant for production settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentstream.core.errors import StorageError
from agentstream.sinks.clickhouse._backend import ClickHouseBackend, QueryResult

__all__ = ["FaultInjectingBackend"]


class FaultInjectingBackend:
    """A backend whose inserts fail while ``fault_file`` exists (a test hook)."""

    def __init__(self, inner: ClickHouseBackend, fault_file: Path) -> None:
        self.inner = inner
        self.fault_file = Path(fault_file)
        self.kind = inner.kind
        self.database = inner.database

    def ping(self) -> bool:
        return self.inner.ping()

    def version(self) -> str:
        return self.inner.version()

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.command(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        return self.inner.query(sql, params)

    def query_raw(
        self, sql: str, fmt: str, params: Mapping[str, str] | None = None
    ) -> tuple[bytes, int]:
        """Analyst reads pass through, as every query does."""
        raw: Any = self.inner  # the embedded and server backends both have query_raw
        result: tuple[bytes, int] = raw.query_raw(sql, fmt, params)
        return result

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> int:
        if self.fault_file.exists():
            raise StorageError(
                f"ClickHouse ({self.kind}): unavailable (fault injected: {self.fault_file} exists)"
            )
        return self.inner.insert(table, columns, rows, dedup_token=dedup_token)

    def close(self) -> None:
        self.inner.close()
