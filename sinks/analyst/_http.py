"""The ClickHouse HTTP interface for analysts: framework-free, one request in, one reply out.

:class:`AnalystHttp` speaks enough of ClickHouse's HTTP protocol for curl,
clickhouse-connect and Grafana's ClickHouse data source:

* ``GET /ping`` (and ``GET /`` without a query) → ``Ok.``;
* ``GET`` / ``POST /?query=…``: the statement is the ``query`` argument, then
  the body (a newline between them, as ClickHouse does);
* credentials — the ``X-ClickHouse-User`` / ``X-ClickHouse-Key`` headers, HTTP
  basic auth, or the ``user`` / ``password`` arguments — name an API key (key
  name = user, secret = password). They are checked **before the body is read**;
  the body's size is limited (``analyst.max_body_bytes``);
* ``default_format`` and the statement's ``FORMAT`` pick the output format from
  a whitelist; the engine renders it (TabSeparated by default);
* ``param_<name>`` arguments fill ``{name:Type}`` placeholders (typed by the engine);
* the arguments clients send on their own (``database``, ``session_id``,
  ``query_id``, ``wait_end_of_query``, ``client_protocol_version`` …) are
  accepted from :data:`TRANSPORT_ARGUMENTS`; any other setting is refused
  (``Code: 164 … READONLY``): limits come from the key's role;
* errors are ClickHouse's: ``Code: N. DB::Exception: … (NAME)`` with the
  ``X-ClickHouse-Exception-Code`` header and a 4xx/5xx status.

Every request except ``/ping`` is audited (accepted, refused,
unauthenticated, malformed or failed).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping

from agentstream.core.config import AnalystSettings
from agentstream.core.errors import (
    AuthenticationFailed,
    QueryRefused,
    StorageError,
)
from agentstream.core.http import HttpReply
from agentstream.sinks.analyst._checker import OUTPUT_FORMATS
from agentstream.sinks.analyst._handshake import handshake_answer
from agentstream.sinks.analyst._keys import KeyStore, Principal
from agentstream.sinks.analyst._session import AnalystEngine, engine_code

__all__ = ["TRANSPORT_ARGUMENTS", "AnalystHttp", "HttpReply"]

#: URL arguments clients send on their own; accepted (and ignored unless said otherwise)
TRANSPORT_ARGUMENTS = frozenset(
    {
        "query",
        "user",
        "password",
        "database",  # must name the analyst database
        "default_format",  # whitelisted output format
        "query_id",  # echoed in X-ClickHouse-Query-Id
        "session_id",  # sessions keep nothing here: every request stands alone
        "session_timeout",
        "session_check",
        "wait_end_of_query",  # results are always complete before they are sent
        "client_protocol_version",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "enable_http_compression",  # replies are never compressed (no Content-Encoding)
        "cancel_http_readonly_queries_on_client_close",
        "buffer_size",
    }
)

_log = logging.getLogger(__name__)

_PARAM = re.compile(r"^param_([A-Za-z_][A-Za-z0-9_]*)$")

_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONStrings": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONCompactEachRow": "application/x-ndjson; charset=UTF-8",
    "Native": "application/octet-stream",
    "RowBinary": "application/octet-stream",
    "RowBinaryWithNames": "application/octet-stream",
    "RowBinaryWithNamesAndTypes": "application/octet-stream",
}

_HTTP_STATUS = {
    516: 401,  # AUTHENTICATION_FAILED
    497: 403,  # ACCESS_DENIED
    164: 403,  # READONLY
    62: 400,  # SYNTAX_ERROR
    36: 400,  # BAD_ARGUMENTS
    73: 400,  # UNKNOWN_FORMAT
    81: 404,  # UNKNOWN_DATABASE
    60: 404,  # UNKNOWN_TABLE
    46: 404,  # UNKNOWN_FUNCTION
    47: 404,  # UNKNOWN_IDENTIFIER
    307: 413,  # TOO_LARGE_STRING_SIZE (body over the limit)
    159: 500,  # TIMEOUT_EXCEEDED
}
_ERROR_NAMES = {
    164: "READONLY",
    81: "UNKNOWN_DATABASE",
    307: "TOO_LARGE_STRING_SIZE",
    36: "BAD_ARGUMENTS",
}


class _Malformed(QueryRefused):
    """Not a request this interface understands (audited as ``malformed``)."""

    code = 36
    name = "BAD_ARGUMENTS"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _credentials(headers: Mapping[str, str], args: Mapping[str, str]) -> tuple[str, str | None]:
    """``(user, secret)`` from the headers, basic auth or the URL (secret None: none given)."""
    user = _header(headers, "X-ClickHouse-User")
    key = _header(headers, "X-ClickHouse-Key")
    if user is not None or key is not None:
        return user or "", key
    auth = _header(headers, "Authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic":
            return "", None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", None
        name, sep, secret = decoded.partition(":")
        return name, secret if sep else None
    if "user" in args or "password" in args:
        return args.get("user", ""), args.get("password")
    return "", None


class AnalystHttp:
    """ClickHouse's HTTP protocol over :class:`AnalystEngine`, authenticated by API keys."""

    def __init__(self, engine: AnalystEngine, keys: KeyStore, settings: AnalystSettings) -> None:
        self.engine = engine
        self.keys = keys
        self.settings = settings
        self._version: str | None = None

    def _server_version(self) -> str:
        if self._version is None:
            try:
                self._version = self.engine.backend.version()
            except StorageError:
                return "unknown"
        return self._version

    # -- replies ---------------------------------------------------------------------------

    def _error(self, exc: Exception, query_id: str) -> HttpReply:
        if isinstance(exc, QueryRefused):
            code, name, message = exc.code, exc.name, str(exc)
            version = self._server_version()
            body = f"Code: {code}. DB::Exception: {message}. ({name}) (version {version})\n"
        else:
            code = engine_code(exc)
            message = str(exc)
            for prefix in ("ClickHouse (embedded): ", "ClickHouse: "):
                message = message.removeprefix(prefix)
            body = (
                message
                if message.startswith("Code: ")
                else f"Code: {code}. DB::Exception: {message}"
            )
            body = body.rstrip("\n") + "\n"
        status = _HTTP_STATUS.get(code, 500)
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(code),
            "X-ClickHouse-Query-Id": query_id,
        }
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="agentstream analyst"'
        return HttpReply(status, headers, body.encode())

    @staticmethod
    def _ok_text() -> HttpReply:
        return HttpReply(200, {"Content-Type": "text/plain; charset=UTF-8"}, b"Ok.\n")

    # -- the request -----------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        read_body: Callable[[int], bytes],
        *,
        client: str = "",
    ) -> HttpReply:
        """Serve one request. ``read_body(n)`` is called at most once, after the key is checked."""
        started = time.perf_counter()
        method = method.upper()
        try:
            args = dict(urllib.parse.parse_qsl(query_string, keep_blank_values=True))
        except ValueError:
            args = {}
        query_id = args.get("query_id") or str(uuid.uuid4())
        route = path.split("?", 1)[0].rstrip("/") or "/"
        if route == "/ping" and method in ("GET", "HEAD"):
            return self._ok_text()
        user, secret = _credentials(headers, args)
        received = args.get("query", "")
        principal: Principal | None = None

        def audit(outcome: str, error: str, statement: str = received) -> None:
            self.engine.audit(
                principal=principal, key_name=user, via="http", client=client,
                received=statement, outcome=outcome, error=error, started=started,
            )  # fmt: skip

        try:
            if route != "/":
                raise _Malformed(f"There is no handle {route} (only / and /ping)", code=36)
            if method not in ("GET", "POST"):
                raise _Malformed(f"HTTP method {method} is not supported (GET, POST)")
            length_header = _header(headers, "Content-Length")
            if method == "GET" and not received and not length_header:
                return self._ok_text()
            if secret is None:
                raise AuthenticationFailed(
                    f"{user or 'default'}: Authentication failed: an API key is required "
                    "(X-ClickHouse-User / X-ClickHouse-Key, basic auth, or user / password)"
                )
            principal = self.keys.authenticate(user, secret)
        except AuthenticationFailed as exc:
            audit("unauthenticated", str(exc))
            return self._error(exc, query_id)
        except _Malformed as exc:
            audit("malformed", str(exc))
            return self._error(exc, query_id)
        # the key is good: now the body
        try:
            sql = self._statement(method, headers, received, read_body)
        except QueryRefused as exc:
            audit("malformed", str(exc))
            return self._error(exc, query_id)
        try:
            fmt, params = self._arguments(args)
        except _Malformed as exc:
            audit("malformed", str(exc), sql)
            return self._error(exc, query_id)
        except QueryRefused as exc:
            audit("refused", str(exc), sql)
            return self._error(exc, query_id)
        return self._run(principal, sql, fmt, params, query_id, client, started)

    def _statement(
        self,
        method: str,
        headers: Mapping[str, str],
        received: str,
        read_body: Callable[[int], bytes],
    ) -> str:
        body = b""
        if method == "POST":
            if (_header(headers, "Transfer-Encoding") or "").lower() not in ("", "identity"):
                raise _Malformed("chunked request bodies are not supported; send Content-Length")
            if (_header(headers, "Content-Encoding") or "identity").lower() != "identity":
                raise _Malformed("compressed request bodies are not supported")
            content_type = (_header(headers, "Content-Type") or "").lower()
            if content_type.startswith("multipart/"):
                raise _Malformed("multipart requests (external data) are not supported")
            raw_length = _header(headers, "Content-Length") or "0"
            try:
                length = int(raw_length)
            except ValueError as exc:
                raise _Malformed(f"Content-Length {raw_length!r} is not a number") from exc
            if length < 0:
                raise _Malformed("negative Content-Length")
            if length > self.settings.max_body_bytes:
                raise _Malformed(
                    f"request body of {length} bytes is over the limit of "
                    f"{self.settings.max_body_bytes} (analyst.max_body_bytes)",
                    code=307,
                    name="TOO_LARGE_STRING_SIZE",
                )
            body = read_body(length) if length else b""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Malformed("the request body is not UTF-8") from exc
        if received and text:
            return f"{received}\n{text}"
        sql = received or text
        if not sql.strip():
            raise _Malformed("Empty query", code=62, name="SYNTAX_ERROR")
        return sql

    def _arguments(self, args: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        fmt = args.get("default_format") or "TabSeparated"
        if fmt not in OUTPUT_FORMATS:
            raise QueryRefused(f"Unknown or refused format {fmt!r}", code=73, name="UNKNOWN_FORMAT")
        database = args.get("database")
        if database not in (None, "", self.engine.backend.database):
            raise QueryRefused(
                f"Database {database} does not exist "
                f"(analysts read {self.engine.backend.database})",
                code=81,
                name="UNKNOWN_DATABASE",
            )
        for flag in ("compress", "decompress"):
            if args.get(flag, "0") not in ("", "0"):
                raise _Malformed(f"{flag}=1 (ClickHouse block compression) is not supported")
        params: dict[str, str] = {}
        for name, value in args.items():
            match = _PARAM.match(name)
            if match:
                params[match.group(1)] = value
            elif name not in TRANSPORT_ARGUMENTS and name not in ("compress", "decompress"):
                raise QueryRefused(
                    f"Cannot modify '{name}' setting in readonly mode "
                    "(analyst limits come from the key's role)",
                    code=164,
                    name="READONLY",
                )
        return fmt, params

    def _run(
        self,
        principal: Principal,
        sql: str,
        fmt: str,
        params: dict[str, str],
        query_id: str,
        client: str,
        started: float,
    ) -> HttpReply:
        try:
            answer = handshake_answer(
                sql,
                principal,
                self.settings,
                database=self.engine.backend.database,
                existing=self.engine.known_objects(),
            )
            if answer is not None:
                fixed_sql, asked = answer
                out_fmt = asked if asked in OUTPUT_FORMATS else fmt
                body, rows = self.engine.reader_for(principal).query_raw(fixed_sql, out_fmt)
                self.engine.audit(
                    principal=principal, via="http", client=client, kind="handshake",
                    received=sql, run=fixed_sql, outcome="ok", rows=rows, started=started,
                )  # fmt: skip
            else:
                result = self.engine.execute(
                    principal, sql, fmt=fmt, via="http", params=params or None,
                    allow_format=True, client=client,
                )  # fmt: skip
                body, rows, out_fmt = result.body, result.rows, result.fmt
        except (QueryRefused, StorageError) as exc:
            return self._error(exc, query_id)
        except Exception as exc:  # a bug must not drop the connection unaudited
            _log.exception("analyst request failed")
            self.engine.audit(
                principal=principal, via="http", client=client, received=sql,
                outcome="failed", error=f"internal error: {type(exc).__name__}", started=started,
            )  # fmt: skip
            return self._error(StorageError(f"internal error: {type(exc).__name__}"), query_id)
        summary = {"read_rows": "0", "read_bytes": "0", "result_rows": str(max(rows, 0))}
        headers = {
            "Content-Type": _CONTENT_TYPES.get(out_fmt, "text/plain; charset=UTF-8"),
            "X-ClickHouse-Format": out_fmt,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Server-Display-Name": "agentstream",
            "X-ClickHouse-Summary": json.dumps(summary),
        }
        return HttpReply(200, headers, body)
