"""The embedded ClickHouse engine (chdb), data in a local folder.

One process can hold one chdb folder at a time; while a worker runs it owns
the folder and analysts go through the worker.

Inserts are columnar: the rows become an Arrow table typed from the table's
columns (:mod:`agentstream.sinks.clickhouse._arrow`), written as an Arrow IPC
stream to a scratch file and read by the engine with ``INSERT ... FROM INFILE
... FORMAT ArrowStream``: several times cheaper than parsing text, and cheaper
than chdb's ``Python()`` table function over the same table.
A table with a column type the Arrow mapping does not know, or an install
without pyarrow, is inserted as TabSeparated text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentstream.core.errors import StorageError
from agentstream.sinks.clickhouse._arrow import arrow_schema, arrow_table, write_stream
from agentstream.sinks.clickhouse._backend import QueryResult
from agentstream.sinks.clickhouse._tsv import encode_param, encode_rows

__all__ = ["EmbeddedClickHouse", "decode_json_compact"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DATETIME_TYPE = re.compile(r"^(Nullable\()?DateTime(64)?\b")
_DATE_TYPE = re.compile(r"^(Nullable\()?Date(32)?\)?$")


def _identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise StorageError(f"invalid {what} name {name!r}")
    return name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def _convert(value: Any, ch_type: str) -> Any:
    """JSON values from chdb → the Python types clickhouse-connect returns."""
    if value is None or not isinstance(value, str):
        return value
    if _DATETIME_TYPE.match(ch_type):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    if _DATE_TYPE.match(ch_type):
        return dt.date.fromisoformat(value)
    return value


def decode_json_compact(raw: bytes) -> QueryResult:
    """A ``JSONCompact`` result as a :class:`QueryResult` (times as aware datetimes)."""
    if not raw.strip():
        return QueryResult(columns=(), types=())
    payload = json.loads(raw)
    meta = payload.get("meta", [])
    columns = tuple(str(col["name"]) for col in meta)
    types = tuple(str(col["type"]) for col in meta)
    rows = [
        tuple(_convert(v, t) for v, t in zip(row, types, strict=True))
        for row in payload.get("data", [])
    ]
    return QueryResult(columns=columns, types=types, rows=rows)


class EmbeddedClickHouse:
    """The real ClickHouse engine, in process, on a data folder."""

    kind = "embedded"

    def __init__(self, path: Path | str, *, database: str = "agentstream") -> None:
        try:
            from chdb import session
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StorageError(
                "the embedded ClickHouse needs chdb: pip install 'agentstream[worker]'"
            ) from exc
        self.path = Path(path)
        self.database = _identifier(database, "database")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        #: (table, columns) -> the Arrow schema of an insert (None: insert as text);
        #: emptied by every command (a migration may change a column's type)
        self._schemas: dict[tuple[str, tuple[str, ...]], Any] = {}
        session_cls: Any = session.Session  # chdb ships no type hints
        try:
            self._session: Any = session_cls(str(self.path))
        except Exception as exc:
            raise StorageError(
                f"cannot open the embedded ClickHouse at {self.path}: {exc}"
            ) from exc
        #: the Arrow stream of the insert under way (see :meth:`insert`)
        self._scratch = Path(tempfile.mkdtemp(prefix="agentstream-insert-")) / "rows.arrows"
        self._run("SET output_format_json_quote_64bit_integers = 0")
        self._run("SET output_format_json_quote_decimals = 0")
        self._run(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self._run(f"USE {self.database}")

    def _run(self, sql: str, fmt: str = "CSV", params: Mapping[str, Any] | None = None) -> Any:
        escaped = {k: encode_param(v) for k, v in params.items()} if params else None
        return self._session_query(sql, fmt, escaped)

    def _session_query(self, sql: str, fmt: str, params: dict[str, str] | None) -> Any:
        """One query on the session, under the lock.

        A query that fails part-way leaves its output format's opening (e.g. JSON's
        ``meta`` block) in chdb's session buffer, where the *next* query's result would
        start with it: another caller's column names, and JSON that no longer parses.
        So a failure is followed by a throw-away query that takes the leftover with it.
        """
        with self._lock:
            try:
                if params:
                    return self._session.query(sql, fmt, params=params)
                return self._session.query(sql, fmt)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self._session.query("SELECT 1", "TabSeparated")
                raise StorageError(f"ClickHouse (embedded): {_first_line(exc)}") from exc

    def ping(self) -> bool:
        try:
            return bool(self.query("SELECT 1").scalar() == 1)
        except StorageError:
            return False

    def version(self) -> str:
        return str(self.query("SELECT version()").scalar())

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._schemas.clear()
        self._run(sql, "CSV", params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        return decode_json_compact(self._run(sql, "JSONCompact", params).bytes())

    def query_raw(
        self, sql: str, fmt: str, params: Mapping[str, str] | None = None
    ) -> tuple[bytes, int]:
        """The result of ``sql`` rendered by the engine in output format ``fmt``, and its rows.

        ``params`` are ``{name:Type}`` values already in the engine's escaped text form
        (as the HTTP interface's ``param_<name>`` arguments carry them).
        """
        result = self._session_query(sql, fmt, dict(params) if params else None)
        return bytes(result.bytes() or b""), int(result.rows_read())

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
        name = _identifier(table, "table")
        cols = ", ".join(_identifier(c, "column") for c in columns)
        settings: list[str] = []
        if dedup_token is not None:
            token = dedup_token.replace("\\", "\\\\").replace("'", "\\'")
            settings.append(f"insert_deduplication_token = '{token}'")
        schema = self._insert_schema(name, tuple(columns))
        head = f"INSERT INTO {self.database}.{name} ({cols})"
        if schema is None:
            clause = f" SETTINGS {', '.join(settings)}" if settings else ""
            self._run(f"{head}{clause} FORMAT TabSeparated\n{encode_rows(rows)}")
            return len(rows)
        # chdb's query text cannot carry binary data: the Arrow stream goes through a file
        # (cheaper for the engine than chdb's Python() table function over the same table)
        table = arrow_table(schema, rows)
        clause = f" SETTINGS {', '.join(settings)}" if settings else ""
        infile = str(self._scratch).replace("\\", "\\\\").replace("'", "\\'")
        sql = f"{head} FROM INFILE '{infile}'{clause} FORMAT ArrowStream"
        with self._lock:
            try:
                write_stream(table, self._scratch)
                self._session.query(sql, "CSV")
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self._session.query("SELECT 1", "TabSeparated")
                raise StorageError(f"ClickHouse (embedded): {_first_line(exc)}") from exc
        return len(rows)

    def _insert_schema(self, table: str, columns: tuple[str, ...]) -> Any:
        """The Arrow schema of an insert into ``columns`` of ``table`` (None: as text)."""
        key = (table, columns)
        if key in self._schemas:
            return self._schemas[key]
        schema = None
        try:
            import pyarrow  # noqa: F401  (chdb-core depends on it; optional here all the same)
        except ImportError:  # pragma: no cover - depends on the install
            pass
        else:
            types = self.query(
                "SELECT name, type FROM system.columns "
                "WHERE database = {db:String} AND table = {t:String}",
                {"db": self.database, "t": table},
            )
            schema = arrow_schema(columns, {str(n): str(t) for n, t in types.rows})
        self._schemas[key] = schema
        return schema

    def close(self) -> None:
        with self._lock:
            self._session.close()
            shutil.rmtree(self._scratch.parent, ignore_errors=True)
