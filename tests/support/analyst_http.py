"""Serve :class:`AnalystHttp` on a local port for tests (a stand-in for the worker's web port).

The handler is the same adapter the worker needs: method, path, query string
and headers go in; the body is read only when the interface asks for it (after
the key is checked); a body it never read closes the connection.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agentstream.sinks.analyst import AnalystHttp

__all__ = ["serve_analyst_http"]


@contextmanager
def serve_analyst_http(http: AnalystHttp) -> Iterator[int]:
    """Serve ``http`` on 127.0.0.1; yields the port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            body_read = False

            def read_body(n: int) -> bytes:
                nonlocal body_read
                body_read = True
                return self.rfile.read(n)

            reply = http.handle(
                self.command,
                parts.path,
                parts.query,
                dict(self.headers.items()),
                read_body,
                client=self.client_address[0],
            )
            unread = int(self.headers.get("Content-Length") or 0) > 0 and not body_read
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            if unread:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
