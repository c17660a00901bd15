"""Schema registries for the Confluent framing (magic byte 0 + 4-byte schema id).

:class:`SchemaRegistry` is the whole protocol the codec needs; two
implementations ship: :class:`InMemorySchemaRegistry` (tests, single process)
and :class:`HttpSchemaRegistry`, a stdlib-only client of the Confluent REST API
(Confluent, Apicurio's ccompat API, Redpanda, Karapace).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol, runtime_checkable

from agentstream.schemas.errors import SchemaRegistryError

__all__ = ["HttpSchemaRegistry", "InMemorySchemaRegistry", "SchemaRegistry"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@runtime_checkable
class SchemaRegistry(Protocol):
    """What the codec needs from a schema registry.

    Both methods raise :class:`SchemaRegistryError` when they cannot answer.
    """

    def register(self, subject: str, schema: str) -> int:
        """Register Avro ``schema`` (JSON text) under ``subject``; return its global id."""
        ...

    def get(self, schema_id: int) -> str:
        """The Avro schema (JSON text) with global id ``schema_id``."""
        ...


class InMemorySchemaRegistry:
    """A registry in a dict: ids are global and stable per schema text, like Confluent's."""

    def __init__(self, first_id: int = 1) -> None:
        self._lock = threading.Lock()
        self._next_id = first_id
        self._ids: dict[str, int] = {}
        self._schemas: dict[int, str] = {}
        self._subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` under ``subject``; the same text always gets the same id."""
        if not subject:
            raise SchemaRegistryError("subject must not be empty")
        key = _normalise(schema)
        with self._lock:
            schema_id = self._ids.get(key)
            if schema_id is None:
                schema_id = self._next_id
                self._next_id += 1
                self._ids[key] = schema_id
                self._schemas[schema_id] = schema
            versions = self._subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
        return schema_id

    def get(self, schema_id: int) -> str:
        """The schema with id ``schema_id``; :class:`SchemaRegistryError` if unknown."""
        try:
            return self._schemas[schema_id]
        except KeyError:
            raise SchemaRegistryError(f"schema id {schema_id} is not registered") from None

    def subjects(self) -> dict[str, list[int]]:
        """Every subject and the ids registered under it, oldest first."""
        with self._lock:
            return {subject: list(ids) for subject, ids in self._subjects.items()}


def _normalise(schema: str) -> str:
    try:
        return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
    except ValueError as exc:
        raise SchemaRegistryError(f"schema is not JSON: {exc}") from exc


class HttpSchemaRegistry:
    """Client of a Confluent-compatible registry's REST API, stdlib only (``urllib``).

    ``register`` is ``POST /subjects/{subject}/versions``; ``get`` is
    ``GET /schemas/ids/{id}``. Answers are cached, so each id costs one request
    per process. Basic auth if ``username`` is given.
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SchemaRegistryError(
                f"registry url must be http(s)://host[:port][/path], not {url!r}"
            )
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._headers = {"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE}
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._by_id: dict[int, str] = {}
        self._registered: dict[tuple[str, str], int] = {}

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` under ``subject`` (idempotent on the server); return its id."""
        cached = self._registered.get((subject, schema))
        if cached is not None:
            return cached
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        answer = self._request("POST", path, {"schema": schema})
        schema_id = answer.get("id")
        if not isinstance(schema_id, int):
            raise SchemaRegistryError(f"registry answered {answer!r} without an integer id")
        self._registered[(subject, schema)] = schema_id
        self._by_id[schema_id] = schema
        return schema_id

    def get(self, schema_id: int) -> str:
        """The schema with id ``schema_id`` (cached after the first request)."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        answer = self._request("GET", f"/schemas/ids/{int(schema_id)}", None)
        schema_type = answer.get("schemaType", "AVRO")
        schema = answer.get("schema")
        if schema_type != "AVRO" or not isinstance(schema, str):
            raise SchemaRegistryError(f"schema id {schema_id} is not an Avro schema")
        self._by_id[schema_id] = schema
        return schema

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url + path, data=data, method=method, headers=self._headers
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 - scheme checked in __init__
                request, timeout=self.timeout_s, context=self._ssl_context
            ) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc.read())
            raise SchemaRegistryError(
                f"registry {method} {path} failed: HTTP {exc.code}{detail}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SchemaRegistryError(f"registry {self.url} unreachable: {exc}") from exc
        try:
            answer = json.loads(payload)
        except ValueError as exc:
            raise SchemaRegistryError(f"registry {method} {path}: answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise SchemaRegistryError(f"registry {method} {path}: unexpected answer {answer!r}")
        return answer


def _error_detail(payload: bytes) -> str:
    try:
        answer = json.loads(payload)
    except ValueError:
        return ""
    if isinstance(answer, dict) and "message" in answer:
        return f" (error_code {answer.get('error_code')}: {answer['message']})"
    return ""
