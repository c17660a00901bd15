"""A ClickHouse server over HTTP, through clickhouse-connect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentstream.core.config import ClickHouseSettings
from agentstream.core.errors import StorageError
from agentstream.sinks.clickhouse._backend import QueryResult

__all__ = ["ServerClickHouse"]


class ServerClickHouse:
    """ClickHouse server backend; same contract as the embedded engine."""

    kind = "server"

    def __init__(self, settings: ClickHouseSettings, *, create_database: bool = True) -> None:
        try:
            import clickhouse_connect
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StorageError(
                "the ClickHouse server backend needs clickhouse-connect: "
                "pip install 'agentstream[worker]'"
            ) from exc
        self.database = settings.database
        try:
            if create_database:
                self._create_database(clickhouse_connect, settings)
            self._client = clickhouse_connect.get_client(
                host=settings.host,
                port=settings.port,
                username=settings.username,
                password=settings.password.get_secret_value(),
                database=self.database,
                secure=settings.secure,
                connect_timeout=settings.connect_timeout_s,
            )
        except Exception as exc:
            raise StorageError(
                f"cannot reach ClickHouse at {settings.host}:{settings.port}: {exc}"
            ) from exc

    def _create_database(self, clickhouse_connect: Any, settings: ClickHouseSettings) -> None:
        admin = clickhouse_connect.get_client(
            host=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password.get_secret_value(),
            secure=settings.secure,
            connect_timeout=settings.connect_timeout_s,
        )
        admin.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        admin.close()

    def ping(self) -> bool:
        return bool(self._client.ping())

    def version(self) -> str:
        return str(self._client.server_version)

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise StorageError(f"ClickHouse: {exc}") from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        try:
            result = self._client.query(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise StorageError(f"ClickHouse: {exc}") from exc
        return QueryResult(
            columns=tuple(result.column_names),
            types=tuple(t.name for t in result.column_types),
            rows=[tuple(row) for row in result.result_rows],
        )

    def query_raw(
        self, sql: str, fmt: str, params: Mapping[str, str] | None = None
    ) -> tuple[bytes, int]:
        """The result of ``sql`` in output format ``fmt`` (rows: -1, the server does not say)."""
        try:
            body = self._client.raw_query(sql, parameters=dict(params) if params else None, fmt=fmt)
        except Exception as exc:
            raise StorageError(f"ClickHouse: {exc}") from exc
        return bytes(body), -1

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> int:
        if not rows:
            return 0
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        try:
            self._client.insert(table, rows, column_names=list(columns), settings=settings)
        except Exception as exc:
            raise StorageError(f"ClickHouse insert into {table}: {exc}") from exc
        return len(rows)

    def close(self) -> None:
        self._client.close()
