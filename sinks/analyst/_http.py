"""Analyst access through the worker's web port, and the switch that picks the way in.

While a worker runs it owns the embedded database folder, so analyst queries
go through its web port: ``POST /analyst/query`` (``{"sql": ...}``) and
``POST /analyst/report`` (``{"name", "since", "until", "tenant", "bucket_s"}``),
each with ``"identity": {"who", "role", "tenant"}`` and the header
``Authorization: Bearer <worker.query_token>``. The worker mounts
:func:`handle_analyst_request` (framework-free: path, headers, body → status,
JSON) on its web port (``processors.engine.run_processors(analyst=...)``).

:func:`connect` uses the worker when a token is configured and the port
answers, and opens the folder directly otherwise.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError, QueryRefused, StorageError
from agentstream.sinks.analyst._format import to_jsonable
from agentstream.sinks.analyst._session import Analyst, Identity, LocalAnalyst
from agentstream.sinks.clickhouse import ClickHouseBackend, QueryResult, migrate, open_backend

__all__ = ["HttpAnalyst", "connect", "handle_analyst_request"]

_JSON = "application/json"


def _result_json(result: QueryResult) -> dict[str, Any]:
    return {
        "columns": list(result.columns),
        "types": list(result.types),
        "rows": [[to_jsonable(v) for v in row] for row in result.rows],
    }


def _time(value: Any, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise QueryRefused(f"{name}: not an ISO time: {value!r}") from exc
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def handle_analyst_request(
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    backend: ClickHouseBackend,
    token: str,
) -> tuple[int, dict[str, Any]]:
    """Serve one analyst request: ``(HTTP status, JSON body)``."""
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    if not token or not hmac.compare_digest(auth.encode(), f"Bearer {token}".encode()):
        return 401, {"error": "missing or wrong analyst token", "refused": True}
    try:
        payload = json.loads(body or b"{}")
        ident = payload.get("identity") or {}
        identity = Identity(
            who=str(ident.get("who", "")),
            role=ident.get("role", "admin"),
            tenant=ident.get("tenant"),
        )
        analyst = LocalAnalyst(backend, identity, via="http")
        kind = path.rstrip("/").rsplit("/", 1)[-1]
        if kind == "query":
            result = analyst.query(str(payload.get("sql", "")))
        elif kind == "report":
            since = _time(payload.get("since"), "since")
            if since is None:
                raise QueryRefused("since: required")
            result = analyst.report(
                str(payload.get("name", "")),
                since=since,
                until=_time(payload.get("until"), "until"),
                tenant=payload.get("tenant"),
                bucket_s=int(payload.get("bucket_s", 60)),
            )
        else:
            return 404, {"error": f"no analyst endpoint {path!r}"}
    except QueryRefused as exc:
        return 403, {"error": str(exc), "refused": True}
    except (ValueError, TypeError, AttributeError) as exc:
        return 400, {"error": f"bad request: {exc}"}
    except AgentstreamError as exc:
        return 500, {"error": str(exc)}
    return 200, _result_json(result)


def _from_json(value: Any, ch_type: str) -> Any:
    if isinstance(value, str) and "DateTime" in ch_type:
        return dt.datetime.fromisoformat(value)
    return value


class HttpAnalyst:
    """Analyst access through a running worker's web port."""

    def __init__(self, base_url: str, token: str, identity: Identity, *, timeout_s: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.identity = identity
        self._token = token
        self._timeout_s = timeout_s

    def close(self) -> None:
        """Nothing to release."""

    def _post(self, endpoint: str, payload: dict[str, Any]) -> QueryResult:
        payload["identity"] = {
            "who": self.identity.who,
            "role": self.identity.role,
            "tenant": self.identity.tenant,
        }
        request = urllib.request.Request(  # noqa: S310 - http(s) URL built from settings
            f"{self.base_url}/analyst/{endpoint}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": _JSON, "Authorization": f"Bearer {self._token}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
            if exc.code in (401, 403):
                raise QueryRefused(f"worker refused the query: {detail}") from exc
            raise StorageError(f"worker answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise StorageError(f"cannot reach the worker at {self.base_url}: {exc}") from exc
        types = tuple(body["types"])
        return QueryResult(
            columns=tuple(body["columns"]),
            types=types,
            rows=[
                tuple(_from_json(v, t) for v, t in zip(row, types, strict=True))
                for row in body["rows"]
            ],
        )

    def query(self, sql: str) -> QueryResult:
        return self._post("query", {"sql": sql})

    def report(
        self,
        name: str,
        *,
        since: dt.datetime,
        until: dt.datetime | None = None,
        tenant: str | None = None,
        bucket_s: int = 60,
    ) -> QueryResult:
        return self._post(
            "report",
            {
                "name": name,
                "since": since.isoformat(),
                "until": until.isoformat() if until else None,
                "tenant": tenant,
                "bucket_s": bucket_s,
            },
        )


def _port_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def connect(settings: Settings, identity: Identity) -> Analyst:
    """Analyst access: through the worker if it runs and a token is set, else directly."""
    worker = settings.worker
    if worker.query_token is not None and _port_answers(worker.web_host, worker.web_port):
        return HttpAnalyst(
            f"http://{worker.web_host}:{worker.web_port}",
            worker.query_token.get_secret_value(),
            identity,
        )
    try:
        backend = open_backend(settings.clickhouse)
    except StorageError as exc:
        if settings.clickhouse.backend == "embedded" and _port_answers(
            worker.web_host, worker.web_port
        ):
            raise StorageError(
                f"{exc} (a worker seems to own the folder; set AGENTSTREAM_WORKER__QUERY_TOKEN "
                "to query through it)"
            ) from exc
        raise
    try:
        if backend.kind == "embedded":
            migrate(backend, settings)  # the folder is ours: make sure the tables exist
    except BaseException:
        backend.close()
        raise
    return LocalAnalyst(backend, identity, owns_backend=True)
