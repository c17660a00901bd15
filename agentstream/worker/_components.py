"""The worker's components, each in the :class:`~agentstream.worker._supervisor.Component`
vocabulary (open, run until stopped, close, abort): the processors, the ClickHouse sink
and alert delivery."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentstream.core import kafka
from agentstream.core.config import Settings
from agentstream.core.metrics import PipelineMetrics

if TYPE_CHECKING:
    from agentstream.processors.engine import ProcessorEngine
    from agentstream.processors.rollouts import RolloutStage
    from agentstream.sinks.alerting import AlertDispatcher, Notifier
    from agentstream.sinks.clickhouse import ClickHouseBackend
    from agentstream.sinks.consumer import SinkWorker

__all__ = [
    "AlertsComponent",
    "ProcessorsComponent",
    "RolloutsComponent",
    "SinkComponent",
    "ensure_changelog",
]

log = logging.getLogger("agentstream.worker")
#: the processors' own messages keep their logger name
_processors_log = logging.getLogger("agentstream.processors")


def ensure_changelog(settings: Settings, topic: str, partitions: int = 1) -> None:
    """Create the processors' state topic (compacted, ``partitions``: the input topics'
    count) if it does not exist."""
    from agentstream.core.topics import ensure_topics

    ensure_topics(
        settings.kafka.bootstrap_servers,
        [topic],
        partitions=partitions,
        replication=settings.kafka.replication_factor,
        client_config=kafka.client_config(settings, "admin", "admin"),
        partitions_setting=None,  # the engine checks the count against the inputs at start
        topic_config={"cleanup.policy": "compact"},
    )


class ProcessorsComponent:
    """The stream processors (:class:`~agentstream.processors.engine.ProcessorEngine`)."""

    def __init__(
        self, settings: Settings, on_ready: Callable[[], None], metrics: PipelineMetrics
    ) -> None:
        from agentstream.processors.engine import ProcessorEngine

        self.engine: ProcessorEngine = ProcessorEngine(settings, metrics=metrics)
        self._settings = settings
        self._on_ready = on_ready

    def open(self) -> None:
        self.engine.open(lambda topic, n: ensure_changelog(self._settings, topic, n))

    def progress(self) -> float:
        """When the engine's loop last came round (monotonic)."""
        return self.engine.beat

    def run(self, stop: threading.Event) -> None:
        def ready() -> None:
            _processors_log.info("processors consuming %s", ", ".join(sorted(self.engine.inputs)))
            self._on_ready()

        self.engine.run(stop, on_ready=ready)

    def close(self) -> None:
        self.engine.close()
        _processors_log.info("processors stopped: %s", self.engine.stats)

    def abort(self) -> None:
        self.engine.close()


class SinkComponent:
    """The ClickHouse sink (:class:`~agentstream.sinks.consumer.SinkWorker`)."""

    def __init__(
        self, settings: Settings, backend: ClickHouseBackend, metrics: PipelineMetrics
    ) -> None:
        from agentstream.sinks.consumer import SinkWorker

        self.sink: SinkWorker = SinkWorker(settings, backend=backend, metrics=metrics)

    def open(self) -> None:
        self.sink.open()
        log.info("ClickHouse sink consuming %s", ", ".join(self.sink.topics))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.sink.step()

    def close(self) -> None:
        self.sink.close()

    def abort(self) -> None:
        self.sink.abort()


class AlertsComponent:
    """Alert delivery (:class:`~agentstream.sinks.alerting.AlertDispatcher`)."""

    def __init__(self, settings: Settings, metrics: PipelineMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self.notifier: Notifier | None = None
        self.dispatcher: AlertDispatcher | None = None

    def open(self) -> None:
        from agentstream.sinks.alerting import AlertDispatcher, Notifier, build_channels

        settings = self._settings
        channels = build_channels(settings.alerts)
        self.notifier = Notifier(channels, settings.alerts, metrics=self._metrics)
        self.dispatcher = AlertDispatcher(settings, self.notifier, metrics=self._metrics)

    def run(self, stop: threading.Event) -> None:
        if self.dispatcher is not None:
            self.dispatcher.run(stop)

    def close(self) -> None:
        try:
            if self.dispatcher is not None:
                self.dispatcher.close()
        finally:
            if self.notifier is not None:
                self.notifier.close(5)

    def abort(self) -> None:
        self.close()


class RolloutsComponent:
    """The rollouts stage (:class:`~agentstream.processors.rollouts.RolloutStage`)."""

    def __init__(self, settings: Settings) -> None:
        from agentstream.processors.rollouts import RolloutStage

        self.stage: RolloutStage = RolloutStage(settings)

    def open(self) -> None:
        self.stage.open()
        _processors_log.info("rollouts stage open: it runs while this worker holds its lease")

    def run(self, stop: threading.Event) -> None:
        self.stage.run(stop)

    def close(self) -> None:
        self.stage.close()

    def abort(self) -> None:
        self.stage.close()
