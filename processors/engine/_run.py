"""Run the processors until SIGTERM / SIGINT, with the worker's web port.

The web port serves ``GET /health``, ``GET /metrics`` (Prometheus text, when
the telemetry settings send metrics there) and ``POST /analyst/...`` (when an
analyst handler is given).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError
from agentstream.core.telemetry import PROMETHEUS_CONTENT_TYPE
from agentstream.processors.engine._engine import ProcessorEngine

__all__ = ["AnalystHandler", "run_processors"]

log = logging.getLogger("agentstream.processors")

#: ``(path, headers, body) -> (status, json body)``, e.g. sinks' ``handle_analyst_request``
AnalystHandler = Any
#: the Prometheus page (``Telemetry.metrics_page``)
MetricsPage = Callable[[], bytes | None]


def _ensure_changelog(settings: Settings, topic: str) -> None:
    admin = AdminClient(dict(settings.kafka.confluent_config()))
    futures = admin.create_topics(
        [
            NewTopic(
                topic,
                1,
                settings.kafka.replication_factor,
                config={"cleanup.policy": "compact"},
            )
        ]
    )
    for future in futures.values():
        try:
            future.result(30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise AgentstreamError(f"cannot create the state topic {topic}: {exc}") from exc


def _web_server(
    settings: Settings, analyst: AnalystHandler | None, metrics_page: MetricsPage | None
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if analyst is None:
                status, payload = 404, {"error": "analyst access is off (no query token)"}
            else:
                status, payload = analyst(self.path, dict(self.headers.items()), body)
            self._reply(status, json.dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:
            page = None
            if self.path == "/metrics" and metrics_page is not None:
                page = metrics_page()
            if page is not None:
                self._reply(200, page, PROMETHEUS_CONTENT_TYPE)
            elif self.path == "/health":
                self._reply(200, b'{"status": "ok"}', "application/json")
            else:
                self._reply(404, b'{"error": "not found"}', "application/json")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("web: " + format, *args)

    worker = settings.worker
    try:
        server = ThreadingHTTPServer((worker.web_host, worker.web_port), Handler)
    except OSError as exc:
        raise AgentstreamError(
            f"AGENTSTREAM_WORKER__WEB_PORT: cannot listen on "
            f"{worker.web_host}:{worker.web_port}: {exc.strerror or exc}"
        ) from exc
    log.info("web port http://%s:%d", worker.web_host, server.server_address[1])
    threading.Thread(target=server.serve_forever, name="agentstream-web", daemon=True).start()
    return server


def run_processors(
    settings: Settings,
    *,
    analyst: AnalystHandler | None = None,
    metrics_page: MetricsPage | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run until stopped (SIGTERM / SIGINT, or ``stop``); returns the exit code.

    The web port is served when there is something to serve (``analyst``
    and/or ``metrics_page``).
    """
    stop = stop or threading.Event()
    engine = ProcessorEngine(settings)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    wanted = analyst is not None or metrics_page is not None
    server = _web_server(settings, analyst, metrics_page) if wanted else None
    ready_file = settings.worker.ready_file

    def ready() -> None:
        log.info("processors consuming %s", ", ".join(sorted(engine.inputs)))
        if ready_file is not None:
            ready_file.parent.mkdir(parents=True, exist_ok=True)
            ready_file.write_text("ready\n")

    try:
        engine.open(lambda topic: _ensure_changelog(settings, topic))
        engine.run(stop, on_ready=ready)
    finally:
        engine.close()
        if server is not None:
            server.shutdown()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
    log.info("processors stopped: %s", engine.stats)
    return 0
