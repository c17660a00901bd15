"""The backend contract shared by the embedded engine and the server client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentstream.core.config import ClickHouseSettings
from agentstream.core.errors import ConfigError

__all__ = ["ClickHouseBackend", "QueryResult", "open_backend"]


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query, with column names and ClickHouse types, values as Python objects."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as ``{column: value}`` dicts."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def scalar(self) -> Any:
        """The first column of the first row (``None`` when there is no row)."""
        return self.rows[0][0] if self.rows else None


@runtime_checkable
class ClickHouseBackend(Protocol):
    """What the sinks, the migration runner and analyst queries need from ClickHouse.

    Queries use ClickHouse's native parameters: ``{name:Type}`` in the SQL and
    ``params={"name": value}``. Errors surface as :class:`agentstream.core.errors.StorageError`.
    """

    kind: str
    database: str

    def ping(self) -> bool:
        """True when the engine answers."""
        ...

    def version(self) -> str:
        """The engine's version string."""
        ...

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, OPTIMIZE, SET ...)."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Run a query and return its rows."""
        ...

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> int:
        """Insert rows into ``table`` (in the backend's database); returns the row count.

        ``dedup_token`` becomes ``insert_deduplication_token``: re-inserting the
        same batch with the same token is a no-op on tables that deduplicate.
        """
        ...

    def close(self) -> None:
        """Release the engine (the embedded folder can then be opened by another process)."""
        ...


def open_backend(settings: ClickHouseSettings) -> ClickHouseBackend:
    """The backend the settings ask for, connected, with its database created.

    With ``settings.fault_file`` set (a test hook) the backend is wrapped so that its
    inserts fail while that file exists (:mod:`agentstream.sinks.clickhouse._faults`).
    """
    backend: ClickHouseBackend
    if settings.backend == "embedded":
        from agentstream.sinks.clickhouse._embedded import EmbeddedClickHouse

        backend = EmbeddedClickHouse(settings.path, database=settings.database)
    elif settings.backend == "server":
        from agentstream.sinks.clickhouse._server import ServerClickHouse

        backend = ServerClickHouse(settings)
    else:
        raise ConfigError(f"AGENTSTREAM_CLICKHOUSE__BACKEND: unknown backend {settings.backend!r}")
    if settings.fault_file is not None:
        from agentstream.sinks.clickhouse._faults import FaultInjectingBackend

        return FaultInjectingBackend(backend, settings.fault_file)
    return backend
