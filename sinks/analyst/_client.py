"""The way in for ``agentstream query`` / ``report``: a worker's HTTP interface, or the folder.

:func:`connect` returns an :class:`Analyst`:

* with a key (``--key NAME``, secret in ``AGENTSTREAM_ANALYST__KEY_SECRET``): through the
  worker's ClickHouse HTTP interface when its web port answers (:class:`HttpAnalyst`),
  else directly on the database, authenticated against the key file — either way
  the key's role and tenant apply;
* without a key: the operator's local access to the embedded folder (or, with the
  server backend, the analyst user's connection), as ``admin``. Whoever can open
  the folder can read its files anyway; remote access always needs a key.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from agentstream.core.config import Settings
from agentstream.core.errors import AuthenticationFailed, QueryRefused, StorageError
from agentstream.sinks.analyst._keys import KeyStore, Principal
from agentstream.sinks.analyst._reports import render_report
from agentstream.sinks.analyst._session import (
    AnalystEngine,
    LocalAnalyst,
    RawQueryBackend,
)
from agentstream.sinks.clickhouse import ClickHouseBackend, QueryResult, migrate, open_backend
from agentstream.sinks.clickhouse._embedded import decode_json_compact
from agentstream.sinks.clickhouse._tsv import encode_param

__all__ = [
    "Analyst",
    "HttpAnalyst",
    "analyst_engine",
    "connect",
    "open_analyst_reader",
    "server_tenant_reader",
]

_OPERATOR = Principal("", "admin")


class Analyst(Protocol):
    """Analyst access: checked read-only SQL and canned reports, both audited."""

    principal: Principal

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult: ...

    def report(
        self,
        name: str,
        *,
        since: dt.datetime,
        until: dt.datetime | None = None,
        tenant: str | None = None,
        bucket_s: int = 60,
    ) -> QueryResult: ...

    def close(self) -> None: ...


class HttpAnalyst:
    """A client of the ClickHouse HTTP interface (what ``agentstream query --key`` uses)."""

    def __init__(self, base_url: str, key: str, secret: str, *, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.principal = Principal(key, "admin")  # the server applies the key's real role
        self._key = key
        self._secret = secret
        self._timeout_s = timeout_s

    def close(self) -> None:
        """Nothing to release."""

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        args = {"default_format": "JSONCompact"}
        args.update({f"param_{k}": encode_param(v) for k, v in (params or {}).items()})
        request = urllib.request.Request(  # noqa: S310 - http(s) URL built from settings
            f"{self.base_url}/?{urllib.parse.urlencode(args)}",
            data=sql.encode(),
            headers={
                "X-ClickHouse-User": self._key,
                "X-ClickHouse-Key": self._secret,
                "Content-Type": "text/plain; charset=utf-8",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
                return decode_json_compact(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace").strip().splitlines()
            message = detail[0] if detail else str(exc.reason)
            code = int(exc.headers.get("X-ClickHouse-Exception-Code") or 0)
            if exc.code == 401:
                raise AuthenticationFailed(message) from exc
            if 400 <= exc.code < 500:
                raise QueryRefused(message, code=code or None) from exc
            raise StorageError(f"the worker answered {exc.code}: {message}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise StorageError(f"cannot reach the worker at {self.base_url}: {exc}") from exc

    def report(
        self,
        name: str,
        *,
        since: dt.datetime,
        until: dt.datetime | None = None,
        tenant: str | None = None,
        bucket_s: int = 60,
    ) -> QueryResult:
        sql, params = render_report(
            name, since=since, until=until, tenant=tenant, bucket_s=bucket_s
        )
        return self.query(sql, params)


def _port_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def open_analyst_reader(settings: Settings, writer: ClickHouseBackend) -> RawQueryBackend:
    """Where analyst statements run: the embedded engine, or the server as the analyst user."""
    if writer.kind != "server":
        if not isinstance(writer, RawQueryBackend):  # pragma: no cover - both backends are
            raise StorageError(f"the {writer.kind} backend cannot run analyst queries")
        return writer
    from agentstream.sinks.clickhouse._server import ServerClickHouse

    ch = settings.clickhouse
    reader_settings = ch.model_copy(
        update={"username": ch.analyst_username, "password": ch.analyst_password}
    )
    return ServerClickHouse(reader_settings, create_database=False)


def server_tenant_reader(settings: Settings) -> Callable[[Principal], RawQueryBackend]:
    """Server mode: one connection per tenant key, as that key's user (see ``analyst_ddl``)."""
    from agentstream.sinks.analyst._server_ddl import tenant_user
    from agentstream.sinks.clickhouse._server import ServerClickHouse

    readers: dict[str, RawQueryBackend] = {}
    lock = threading.Lock()

    def reader(principal: Principal) -> RawQueryBackend:
        with lock:
            if principal.key not in readers:
                ch = settings.clickhouse
                readers[principal.key] = ServerClickHouse(
                    ch.model_copy(
                        update={
                            "username": tenant_user(settings, principal.key),
                            "password": ch.analyst_password,
                        }
                    ),
                    create_database=False,
                )
            return readers[principal.key]

    return reader


def analyst_engine(settings: Settings, backend: ClickHouseBackend) -> AnalystEngine:
    """The engine for ``backend`` (the writer): embedded, or the server's analyst users."""
    if backend.kind == "server":
        return AnalystEngine(
            backend,
            settings.analyst,
            reader=open_analyst_reader(settings, backend),
            tenant_reader=server_tenant_reader(settings),
        )
    return AnalystEngine(backend, settings.analyst)


def connect(settings: Settings, key: str | None = None) -> Analyst:
    """Analyst access for ``key`` (None: the operator's local access, as admin)."""
    worker = settings.worker
    secret = settings.analyst.key_secret
    if key is not None:
        if secret is None:
            raise AuthenticationFailed(
                f"{key}: set the key's secret in AGENTSTREAM_ANALYST__KEY_SECRET"
            )
        if _port_answers(worker.web_host, worker.web_port):
            return HttpAnalyst(
                f"http://{worker.web_host}:{worker.web_port}", key, secret.get_secret_value()
            )
    try:
        backend = open_backend(settings.clickhouse)
    except StorageError as exc:
        if settings.clickhouse.backend == "embedded" and _port_answers(
            worker.web_host, worker.web_port
        ):
            raise StorageError(
                f"{exc} (a worker seems to own the folder: use --key NAME to query through it)"
            ) from exc
        raise
    try:
        if backend.kind == "embedded":
            migrate(backend, settings)  # the folder is ours: make sure the tables exist
        engine = analyst_engine(settings, backend)
        if key is None:
            return LocalAnalyst(engine, _OPERATOR, via="operator", owns_backend=True)
        assert secret is not None
        store = KeyStore(settings.analyst.keys_file)
        try:
            principal = store.authenticate(key, secret.get_secret_value())
        except AuthenticationFailed as exc:
            engine.audit(
                principal=None, key_name=key, via="direct", received="", outcome="unauthenticated",
                error=str(exc),
            )  # fmt: skip
            raise
        return LocalAnalyst(engine, principal, via="direct", owns_backend=True)
    except BaseException:
        backend.close()
        raise
