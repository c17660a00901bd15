"""An in-test Confluent-compatible schema registry: the REST subset our client speaks.

``POST /subjects/{subject}/versions`` registers a schema (same text, same id; ids start
at 100) and ``GET /schemas/ids/{id}`` returns it (404 with error_code 40403 otherwise);
``/subjects/refused...`` answers 409 like an incompatible schema. Every request is
recorded in ``requests``. :func:`serve_registry` runs one on a free port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeRegistry", "serve_registry"]


class FakeRegistry(BaseHTTPRequestHandler):
    """The two endpoints of the Confluent REST API the client uses."""

    schemas: dict[int, str]
    requests: list[tuple[str, str, dict[str, str], Any]]

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        self.requests.append(("POST", self.path, dict(self.headers), body))
        if self.path.startswith("/subjects/refused"):
            self._answer(
                409, {"error_code": 409, "message": "Schema being registered is incompatible"}
            )
            return
        for schema_id, text in self.schemas.items():
            if text == body["schema"]:
                self._answer(200, {"id": schema_id})
                return
        schema_id = 100 + len(self.schemas)
        self.schemas[schema_id] = body["schema"]
        self._answer(200, {"id": schema_id})

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, dict(self.headers), None))
        schema_id = int(self.path.rsplit("/", 1)[-1])
        if schema_id in self.schemas:
            self._answer(200, {"schema": self.schemas[schema_id]})
        else:
            self._answer(404, {"error_code": 40403, "message": "Schema not found"})


@contextmanager
def serve_registry() -> Iterator[tuple[str, type[FakeRegistry]]]:
    """A fresh registry on 127.0.0.1 (its own schemas and requests): ``(url, handler class)``."""
    handler = type("Handler", (FakeRegistry,), {"schemas": {}, "requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
