"""Test support: a real local webhook receiver (http.server on 127.0.0.1, a free port).

:class:`Receiver` answers each POST with the next scripted status (then 200),
records every request, and can *hold* requests until released, so tests order
events without timing thresholds. Use it to try a webhook or Slack channel
without a real endpoint::

    with Receiver([500, 200]) as rx:
        channel = WebhookChannel("hook", rx.url, secret=b"k")
        ...
        assert rx.accepted()
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

__all__ = ["HOLD_LIMIT_S", "Received", "Receiver"]

#: longest a held request waits for ``release`` (a safety net, never reached in a passing run)
HOLD_LIMIT_S = 120.0


@dataclass(frozen=True)
class Received:
    """One request the receiver answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    """``with Receiver([500, 500, 200]) as rx: ... rx.url ... rx.requests``."""

    def __init__(self, statuses: Iterable[int] = (), *, hold: bool = False) -> None:
        self._statuses = deque(statuses)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.requests: list[Received] = []
        #: set when the first request arrived (before it is answered)
        self.arrived = threading.Event()
        self._gate = threading.Event()
        if not hold:
            self._gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.arrived.set()
                receiver._gate.wait(HOLD_LIMIT_S)
                with receiver._lock:
                    status = receiver._statuses.popleft() if receiver._statuses else 200
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, status)
                    )
                    receiver._changed.notify_all()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"ok" if status < 300 else b"nope")
                except OSError:  # the client gave up (timeout, shutdown)
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def release(self) -> None:
        """Let held requests (and all later ones) be answered."""
        self._gate.set()

    def accepted(self) -> list[Received]:
        """The requests answered with a 2xx."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float = 60.0) -> bool:
        """Wait until ``count`` requests were answered."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.requests) >= count, timeout)

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
