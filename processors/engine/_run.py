"""Run the processors until SIGTERM / SIGINT, with the analyst endpoint on the web port."""

from __future__ import annotations

import json
import logging
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from agentstream.config import Settings
from agentstream.errors import AgentstreamError
from processors.engine._engine import ProcessorEngine

__all__ = ["AnalystHandler", "run_processors"]

log = logging.getLogger("agentstream.processors")

#: ``(path, headers, body) -> (status, json body)``, e.g. sinks' ``handle_analyst_request``
AnalystHandler = Any


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


def _web_server(settings: Settings, analyst: AnalystHandler) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, payload = analyst(self.path, dict(self.headers.items()), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            data = b'{"status": "ok"}'
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("web: " + format, *args)

    worker = settings.worker
    server = ThreadingHTTPServer((worker.web_host, worker.web_port), Handler)
    threading.Thread(target=server.serve_forever, name="agentstream-web", daemon=True).start()
    return server


def run_processors(
    settings: Settings,
    *,
    analyst: AnalystHandler | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run until stopped (SIGTERM / SIGINT, or ``stop``); returns the exit code."""
    stop = stop or threading.Event()
    engine = ProcessorEngine(settings)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    server = _web_server(settings, analyst) if analyst is not None else None
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
