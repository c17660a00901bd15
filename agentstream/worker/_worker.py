"""The worker process: one :class:`Worker` owns the components (processors, ClickHouse sink,
alert delivery), their lifecycle (start, stop, health), the signals, the web port and the
ready file."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from agentstream.core import kafka
from agentstream.core.config import Settings
from agentstream.core.errors import StorageError
from agentstream.core.http import HttpReply
from agentstream.core.metrics import PipelineMetrics, pipeline_metrics
from agentstream.worker._components import (
    AlertsComponent,
    ProcessorsComponent,
    RolloutsComponent,
    SinkComponent,
)
from agentstream.worker._supervisor import Component, Supervised
from agentstream.worker._web import Handler, HttpRequest, Routes, WebServer

if TYPE_CHECKING:
    from agentstream.core.telemetry import Telemetry
    from agentstream.sinks.clickhouse import ClickHouseBackend

__all__ = ["Worker", "run_worker"]

log = logging.getLogger("agentstream.worker")


class Worker:
    """The processors, the ClickHouse sink and alert delivery in one supervised process.

    ``start()`` returns once everything is started; ``wait()`` blocks until ``stop()`` (or
    a signal, when ``run()`` installed the handlers) or until a component gave up; ``stop()``
    stops the components (processors first, so the sink and alerts drain their output).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sink: bool = True,
        alerts: bool = True,
        backend: ClickHouseBackend | None = None,
        telemetry: Telemetry | None = None,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._want_sink = sink
        self._want_alerts = alerts
        self._backend = backend
        self._telemetry = telemetry
        self.metrics = metrics or pipeline_metrics()
        self._stop = threading.Event()
        self._gave_up: str | None = None
        self._components: list[Supervised] = []
        self._processors: Supervised | None = None
        self._stack = ExitStack()
        self.web: WebServer | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Create the topics, open the backend, start every component and the web port."""
        from agentstream.core.topics import ensure_topics

        settings = self.settings
        if settings.worker.ready_file is not None:  # a killed worker's file is not our readiness
            settings.worker.ready_file.unlink(missing_ok=True)
        ensure_topics(
            settings.kafka.bootstrap_servers,
            settings.topics.all().values(),
            partitions=settings.kafka.partitions,
            replication=settings.kafka.replication_factor,
            client_config=kafka.client_config(settings, "admin", "admin"),
        )
        backend = self._open_backend() if self._want_sink else None
        self._processors = self._supervise(
            "processors", lambda: ProcessorsComponent(settings, self._became_ready, self.metrics)
        )
        if self._want_sink and backend is not None:
            self._supervise("sink", lambda: SinkComponent(settings, backend, self.metrics))
        if self._want_alerts:
            self._supervise("alerts", lambda: AlertsComponent(settings, self.metrics))
        if settings.rollouts.enabled:
            self._supervise("rollouts", lambda: RolloutsComponent(settings))
        self.web = WebServer(settings.worker, self._routes(backend))
        self.web.start()
        self._stack.callback(self.web.stop)
        for component in self._components:
            component.start()

    def wait(self) -> int:
        """Block until stopped; the exit status (1 when a component gave up). Meanwhile the
        watchdog: a component stuck past ``worker.stuck_after_s`` ends the process."""
        limit = self.settings.worker.stuck_after_s
        while not self._stop.wait(min(5.0, limit / 10)):
            for component in self._components:
                stuck = component.stuck_for(time.monotonic())
                if stuck > limit:
                    self._stuck(component, stuck)
        return 1 if self._gave_up is not None else 0

    def _stuck(self, component: Supervised, stuck: float) -> None:
        """Log where the stuck thread is, then exit at once (status 3): closing its clients
        could block as well, and everything it did not commit is redone by the next start."""
        frames = sys._current_frames()
        where = [
            "".join(traceback.format_stack(frames[thread.ident]))
            for thread in threading.enumerate()
            if thread.name == f"agentstream-{component.name}" and thread.ident in frames
        ]
        log.critical(
            "worker exits: %s has not come round for %.0f s (worker.stuck_after_s); it is in\n%s",
            component.name,
            stuck,
            "\n".join(where) or "(no stack)",
        )
        logging.shutdown()
        os._exit(3)

    def stop(self) -> None:
        """Stop every component (processors first), the web port, then the backend."""
        self._stop.set()
        for component in self._components:
            component.stop()
        ready_file = self.settings.worker.ready_file
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
        self._stack.close()

    def run(self) -> int:
        """Start, wait for SIGTERM / SIGINT (or a component giving up), stop; the exit status."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
        try:
            self.start()
            status = self.wait()
        finally:
            self.stop()
        if self._gave_up is not None:
            log.error("worker stops: %s", self._gave_up)
        return status

    # -- health ---------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``{"status": "ok" | "failing", "components": {name: {...}}}``."""
        states = [component.health() for component in self._components]
        failing = [h for h in states if not h.ok]
        return {
            "status": "failing" if failing or self._gave_up else "ok",
            "components": {h.name: h.as_json() for h in states},
            **({"reason": self._gave_up} if self._gave_up else {}),
        }

    def readiness(self) -> tuple[bool, str]:
        """Whether the processors are ready for traffic, and why not."""
        current = self._processors.current if self._processors is not None else None
        if not isinstance(current, ProcessorsComponent):
            return False, "the processors are not running"
        engine = current.engine
        if not engine.ready:
            return False, "the processors are restoring their state or have no partitions yet"
        lag = engine.health()["lag"]
        limit = self.settings.worker.ready_max_lag
        if lag is None:
            return False, "the processors' consumer lag is not known yet"
        if lag > limit:
            return False, f"the processors' consumer lag is {lag} (max {limit})"
        return True, "ready"

    # -- internals ------------------------------------------------------------

    def _open_backend(self) -> ClickHouseBackend:
        from agentstream.sinks.clickhouse import open_backend

        if self._backend is None:
            self._backend = open_backend(self.settings.clickhouse)
            self._stack.callback(self._backend.close)
        return self._backend

    def _supervise(self, name: str, factory: Callable[[], Component]) -> Supervised:
        supervised = Supervised(name, factory, self.settings.worker, self.metrics, self._give_up)
        self._components.append(supervised)
        return supervised

    def _give_up(self, reason: str) -> None:
        self._gave_up = reason
        self._stop.set()

    def _became_ready(self) -> None:
        ready_file = self.settings.worker.ready_file
        if ready_file is not None:
            ready_file.parent.mkdir(parents=True, exist_ok=True)
            ready_file.write_text("ready\n")

    def _routes(self, backend: ClickHouseBackend | None) -> Routes:
        def health() -> HttpReply:
            body = self.health()
            return HttpReply.json(200 if body["status"] == "ok" else 503, body)

        def ready() -> HttpReply:
            ok, reason = self.readiness()
            return HttpReply.json(200 if ok else 503, {"ready": ok, "reason": reason})

        telemetry = self._telemetry
        page = telemetry.metrics_page if telemetry is not None and telemetry.registry else None
        return Routes(health, ready, page, fallback=self._analyst_http(backend))

    def _analyst_http(self, backend: ClickHouseBackend | None) -> Handler | None:
        """The ClickHouse HTTP interface for analysts (API keys), over the worker's backend."""
        if backend is None:
            return None
        from agentstream.sinks.analyst import AnalystHttp, KeyStore, analyst_engine

        settings = self.settings
        try:
            engine = analyst_engine(settings, backend)
        except StorageError as exc:  # the pipeline runs on; analysts get 404 and the log says why
            log.error("analyst access is off: %s", exc)
            return None
        http = AnalystHttp(engine, KeyStore(settings.analyst.keys_file), settings.analyst)

        def serve(request: HttpRequest) -> HttpReply:
            return http.handle(
                request.method,
                request.path,
                request.query_string,
                request.headers,
                request.read_body,
                client=request.client,
            )

        return serve


def run_worker(settings: Settings, *, sink: bool = True, alerts: bool = True) -> int:
    """Run a worker with telemetry until stopped; returns the exit status."""
    from agentstream.core.telemetry import configure_telemetry

    telemetry = configure_telemetry(settings.telemetry)
    try:
        return Worker(settings, sink=sink, alerts=alerts, telemetry=telemetry).run()
    finally:
        telemetry.shutdown()
