"""The dispatcher: Alert events from the alerts topic to their channels.

It consumes ``settings.topics.name("alerts")`` with the group
``alerts.consumer_group``, decodes each message as an :class:`Alert` and hands
it to a :class:`Notifier` for each of ``alert.channels`` (``log`` when empty).

Offsets are committed only up to the last message whose every notification
has *ended* (delivered, failed after its retries, dropped or skipped), so a
crash re-delivers at most the alerts still in flight (at-least-once; webhook
receivers deduplicate on ``X-Agentstream-Alert-Id``). Within one process,
alert ids already handled are skipped (the evaluator's ids are deterministic,
so a replayed alert has the same id). An undecodable message is logged,
counted in :attr:`DispatcherStats.invalid` and skipped.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from agentstream.core import kafka
from agentstream.core.codec import codec_from_settings
from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError
from agentstream.core.metrics import PipelineMetrics, consumer_lag, pipeline_metrics
from agentstream.schemas import Alert
from agentstream.sinks.alerting._notifier import Notifier, Outcome

__all__ = ["AlertDispatcher", "DispatcherStats"]

log = logging.getLogger("agentstream.sinks.alerting")

_FALLBACK_CHANNELS = ("log",)


@dataclass
class DispatcherStats:
    """What the dispatcher did since it started."""

    consumed: int = 0
    dispatched: int = 0
    duplicates: int = 0
    invalid: int = 0
    commits: int = 0


class _Offsets:
    """Per partition: offsets in flight, and the next offset safe to commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: (topic, partition) → {offset: notifications still pending}, in offset order
        self._pending: dict[tuple[str, int], OrderedDict[int, int]] = {}
        self._committed: dict[tuple[str, int], int] = {}

    def track(self, tp: tuple[str, int], offset: int, notifications: int) -> None:
        with self._lock:
            self._pending.setdefault(tp, OrderedDict())[offset] = notifications

    def done(self, tp: tuple[str, int], offset: int) -> None:
        with self._lock:
            pending = self._pending.get(tp)
            if pending is not None and offset in pending:
                pending[offset] -= 1

    def committable(self) -> list[TopicPartition]:
        """Partitions whose safe position moved: the offset after the last ended prefix."""
        out: list[TopicPartition] = []
        with self._lock:
            for tp, pending in self._pending.items():
                position = None
                while pending:
                    offset, left = next(iter(pending.items()))
                    if left > 0:
                        break
                    pending.popitem(last=False)
                    position = offset + 1
                if position is not None and position != self._committed.get(tp):
                    self._committed[tp] = position
                    out.append(TopicPartition(tp[0], tp[1], position))
        return out

    def forget(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            for p in partitions:
                self._pending.pop((p.topic, p.partition), None)
                self._committed.pop((p.topic, p.partition), None)


class AlertDispatcher:
    """Consume Alert events and deliver each to its channels through a :class:`Notifier`."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier,
        *,
        topic: str | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.topic = topic or settings.topics.name("alerts")
        self.notifier = notifier
        self.stats = DispatcherStats()
        self._codec = codec_from_settings(settings, role="consumer")
        self.metrics = metrics or pipeline_metrics()
        self._group = settings.alerts.consumer_group
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_max = settings.alerts.dedup_ids
        self._offsets = _Offsets()
        config: dict[str, Any] = {"group.id": self._group, **(consumer_config or {})}
        try:
            self._consumer = kafka.consumer(settings, "alerts", config)
            self._consumer.subscribe([self.topic], on_revoke=self._on_revoke)
        except KafkaException as exc:
            raise AgentstreamError(f"alert dispatcher: cannot consume {self.topic}: {exc}") from exc

    def poll(self, timeout: float = 1.0) -> int:
        """Handle at most one message (waiting up to ``timeout`` s), then commit what ended.

        Returns the number of alerts handed to the notifier (0 or 1).
        """
        message = self._consumer.poll(timeout)
        handled = 0 if message is None else self._handle(message)
        self.commit()
        try:
            self.metrics.record_lag(self._group, consumer_lag(self._consumer))
        except KafkaException as exc:
            log.debug("alert dispatcher: consumer lag unknown: %s", exc)
        return handled

    def run(self, stop: threading.Event, *, poll_timeout: float = 0.5) -> None:
        """Poll until ``stop`` is set, then commit what ended."""
        while not stop.is_set():
            self.poll(poll_timeout)
        self.commit()

    def commit(self, *, wait: bool = False) -> None:
        """Commit the offsets whose alerts have all ended."""
        positions = self._offsets.committable()
        if not positions:
            return
        try:
            if wait:
                self._consumer.commit(offsets=positions, asynchronous=False)
            else:
                self._consumer.commit(offsets=positions, asynchronous=True)
            self.stats.commits += 1
        except KafkaException as exc:
            log.warning("alert dispatcher: commit failed (will retry): %s", exc)

    def close(self, timeout: float | None = 10.0) -> None:
        """Let queued notifications end (up to ``timeout``), commit, close the consumer."""
        self.notifier.flush(timeout)
        self.commit(wait=True)
        self.metrics.forget_group(self._group)
        self._consumer.close()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.commit(wait=True)
        self._offsets.forget(partitions)

    def _handle(self, message: Message) -> int:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("alert dispatcher: consumer error: %s", error)
            return 0
        self.stats.consumed += 1
        tp = (message.topic() or self.topic, message.partition() or 0)
        self.metrics.consumed.add(1, {"stage": "alerts", "topic": tp[0]})
        offset = message.offset() or 0
        try:
            alert = self._codec.decode_model(message.value() or b"", Alert)
        except AgentstreamError as exc:
            self.stats.invalid += 1
            log.error(
                "alert dispatcher: skipped an undecodable message at %s[%d]@%d: %s",
                tp[0],
                tp[1],
                offset,
                exc,
            )
            self._offsets.track(tp, offset, 0)
            return 0
        if alert.alert_id in self._seen:
            self.stats.duplicates += 1
            self._offsets.track(tp, offset, 0)
            return 0
        self._remember(alert.alert_id)
        channels = list(dict.fromkeys(alert.channels or _FALLBACK_CHANNELS))
        self._offsets.track(tp, offset, len(channels))

        def ended(_alert: Alert, _channel: str, _outcome: Outcome) -> None:
            self._offsets.done(tp, offset)

        self.notifier.deliver(alert, channels, on_done=ended)
        self.stats.dispatched += 1
        return 1

    def _remember(self, alert_id: str) -> None:
        self._seen[alert_id] = None
        while len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)
