"""The worker's web port: ``/health``, ``/ready``, ``/metrics`` and, on every other path,
the analysts' ClickHouse HTTP interface (``/``, ``/ping``; see ``agentstream.sinks.analyst``).

``GET /health`` is liveness: 200 while every component runs (or is starting), 503 with
a JSON body naming each failing component and its last error. ``GET /ready`` is
readiness: 200 once the processors have their partitions, have restored their state
and their consumer lag is at most ``worker.ready_max_lag``; 503 with the reason
otherwise. ``GET /metrics`` is the Prometheus page when metrics go there.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentstream.core.config import WorkerSettings
from agentstream.core.errors import AgentstreamError
from agentstream.core.http import HttpReply
from agentstream.core.telemetry import PROMETHEUS_CONTENT_TYPE

__all__ = ["HttpReply", "HttpRequest", "Routes", "WebServer"]

log = logging.getLogger("agentstream.worker")


@dataclass(frozen=True)
class HttpRequest:
    """One request, its body not read yet: ``read_body(n)`` reads ``n`` bytes of it, once
    (the handler checks ``Content-Length`` against its own limit first)."""

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    read_body: Callable[[int], bytes]
    #: the client's address
    client: str = ""


Handler = Callable[[HttpRequest], HttpReply]


@dataclass
class Routes:
    """What the web port serves; None: not served (404)."""

    health: Callable[[], HttpReply]
    ready: Callable[[], HttpReply]
    metrics_page: Callable[[], bytes | None] | None = None
    #: every other path (the ClickHouse HTTP interface on ``/`` and ``/ping``)
    fallback: Handler | None = None


class WebServer:
    """A threading HTTP server on ``worker.web_host:web_port`` (0: any free port)."""

    def __init__(self, settings: WorkerSettings, routes: Routes) -> None:
        handler = _handler_class(routes)
        try:
            self._server = ThreadingHTTPServer((settings.web_host, settings.web_port), handler)
        except OSError as exc:
            raise AgentstreamError(
                f"AGENTSTREAM_WORKER__WEB_PORT: cannot listen on "
                f"{settings.web_host}:{settings.web_port}: {exc.strerror or exc}"
            ) from exc
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        host = self._server.server_address[0]
        log.info("web port http://%s:%d", host, self.port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="agentstream-web", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(routes: Routes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        timeout = 60  # an idle keep-alive client or a short body holds a thread this long
        body_read = False
        length = 0

        def _reply(self, reply: HttpReply) -> None:
            chunked = "Transfer-Encoding" in self.headers
            unread = chunked or (self.length > 0 and not self.body_read)
            if unread:  # the next request on this connection would start inside the body
                self.close_connection = True
            self.send_response(reply.status)
            self.send_header("Content-Length", str(len(reply.body)))
            headers = {"Content-Type": "application/json", **reply.headers}
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            if unread:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        def _request(self) -> HttpRequest:
            parts = urllib.parse.urlsplit(self.path)
            self.body_read = False
            try:
                self.length = max(0, int(self.headers.get("Content-Length") or 0))
            except ValueError:
                self.length = 0
                raise

            def read_body(n: int) -> bytes:
                if self.body_read:
                    return b""
                self.body_read = True
                return self.rfile.read(min(n, self.length))

            headers = dict(self.headers.items())
            return HttpRequest(
                self.command, parts.path, parts.query, headers, read_body, self.client_address[0]
            )

        def _dispatch(self) -> None:
            try:
                request = self._request()
            except ValueError:
                self.close_connection = True
                self._reply(HttpReply.json(400, {"error": "bad Content-Length"}))
                return
            try:
                reply = self._route(request)
            except Exception:
                log.exception("web: %s %s failed", request.method, request.path)
                reply = HttpReply.json(500, {"error": "internal error; see the worker's log"})
            self._reply(reply)

        def _route(self, request: HttpRequest) -> HttpReply:
            path, method = request.path, request.method
            if method in ("GET", "HEAD"):
                if path == "/health":
                    return routes.health()
                if path == "/ready":
                    return routes.ready()
                if path == "/metrics" and routes.metrics_page is not None:
                    page = routes.metrics_page()
                    if page is not None:
                        return HttpReply(200, {"Content-Type": PROMETHEUS_CONTENT_TYPE}, page)
            if routes.fallback is not None:
                return routes.fallback(request)
            return HttpReply.json(404, {"error": "not found"})

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _dispatch

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("web: " + format, *args)

    return Handler
