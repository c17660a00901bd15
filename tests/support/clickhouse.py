"""A ClickHouse backend that fails on command, around the real engine (fault injection).

:class:`FlakyBackend` delegates everything to a real backend (the embedded engine in
the tests); inserts into the audit-trail tables can be made to fail the way a server
does:

* ``stop()``: every insert raises the "unavailable" error (``Code: 210 ...
  Connection refused``) until ``start()``;
* ``fail_next(n, message)``: the next ``n`` inserts raise it, or a ``StorageError`` with
  ``message`` (a hiccup; "Code: 252 ... Too many parts" for merges falling behind);
* ``slow(seconds)``: every insert first waits that long (``slow(0)`` ends it);
* ``refuse(predicate)``: an insert holding a row for which ``predicate(table, row)``
  holds raises a data error (``Code: 117 ... INCORRECT_DATA``), as ClickHouse
  refuses a value; ``refuse(None)`` ends it;
* ``crash_next(n)``: the next ``n`` inserts raise :class:`BackendBug` (not a
  ``StorageError``: nothing in the sink expects it, the loop dies).

Inserts into ``schema_migrations`` are never failed. ``tokens`` lists the dedup token of
every insert attempted; ``attempts`` / ``failed`` count them; ``errors`` holds what the
real engine itself raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agentstream.core.errors import StorageError
from agentstream.sinks.clickhouse import ClickHouseBackend, QueryResult

__all__ = ["UNAVAILABLE", "BackendBug", "FlakyBackend"]

#: what the server backend raises when ClickHouse is down
UNAVAILABLE = "ClickHouse: Code: 210. DB::NetException: Connection refused (localhost:8123)"

RowPredicate = Callable[[str, Sequence[Any]], bool]


class BackendBug(RuntimeError):
    """An unexpected failure inside the backend (a bug, not a ClickHouse error)."""


class FlakyBackend:
    """Delegates to ``inner``; inserts fail, slow down or refuse rows on command."""

    def __init__(self, inner: ClickHouseBackend, failures: int = 0) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.database = inner.database
        self._lock = threading.Lock()
        self._down = False
        self._fail_next = failures
        self._fail_message = UNAVAILABLE
        self._crash_next = 0
        self._delay_s = 0.0
        self._refuse: RowPredicate | None = None
        self.tokens: list[str | None] = []
        self.attempts = 0
        self.failed = 0
        self.errors: list[str] = []

    # -- commands --------------------------------------------------------------

    def stop(self) -> None:
        """ClickHouse is down: every insert fails until :meth:`start`."""
        self._down = True

    def start(self) -> None:
        """ClickHouse is back."""
        self._down = False

    def fail_next(self, count: int, message: str = UNAVAILABLE) -> None:
        """The next ``count`` inserts fail with ``message`` (default: ClickHouse is down)."""
        with self._lock:
            self._fail_next = count
            self._fail_message = message

    def crash_next(self, count: int = 1) -> None:
        """The next ``count`` inserts raise :class:`BackendBug`."""
        with self._lock:
            self._crash_next = count

    def slow(self, seconds: float) -> None:
        """Every insert waits ``seconds`` first (0: back to normal)."""
        self._delay_s = seconds

    def refuse(self, predicate: RowPredicate | None) -> None:
        """Inserts holding a row matching ``predicate(table, row)`` are refused (data error)."""
        self._refuse = predicate

    @property
    def failures(self) -> int:
        """Inserts still to fail from :meth:`fail_next` (or the constructor's ``failures``)."""
        return self._fail_next

    # -- the backend protocol ----------------------------------------------------

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> int:
        if table == "schema_migrations":
            return self.inner.insert(table, columns, rows, dedup_token=dedup_token)
        with self._lock:
            self.tokens.append(dedup_token)
            self.attempts += 1
            crash = self._crash_next > 0
            if crash:
                self._crash_next -= 1
            hiccup = not crash and self._fail_next > 0
            if hiccup:
                self._fail_next -= 1
        if self._delay_s:
            time.sleep(self._delay_s)
        if crash:
            self.failed += 1
            raise BackendBug(f"injected bug while inserting into {table}")
        if hiccup:
            self.failed += 1
            raise StorageError(self._fail_message)
        if self._down:
            self.failed += 1
            raise StorageError(UNAVAILABLE)
        refuse = self._refuse
        if refuse is not None and any(refuse(table, row) for row in rows):
            self.failed += 1
            raise StorageError(
                f"ClickHouse: Code: 117. DB::Exception: injected: a value of {table} "
                "cannot be stored. (INCORRECT_DATA)"
            )
        try:
            return self.inner.insert(table, columns, rows, dedup_token=dedup_token)
        except StorageError as exc:
            self.errors.append(str(exc))
            raise

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        return self.inner.query(sql, params)

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.command(sql, params)

    def ping(self) -> bool:
        return not self._down and self.inner.ping()

    def version(self) -> str:
        return self.inner.version()

    def close(self) -> None:
        self.inner.close()
