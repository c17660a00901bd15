"""The pipeline's own metrics, on the OpenTelemetry metrics API.

Only ``opentelemetry-api`` is imported here: without an SDK every instrument is
a no-op, so the Emitter and the processors pay nothing until
:func:`agentstream.core.telemetry.configure_telemetry` (or a test) installs a meter
provider. Instruments made before that are proxies that start recording once it
is installed.

=====================================  =========  ==========================================
metric                                 kind       attributes
=====================================  =========  ==========================================
``agentstream.events.consumed``        counter    ``stage``, ``topic``
``agentstream.events.produced``        counter    ``stage``, ``topic``
``agentstream.events.invalid``         counter    ``stage``, ``topic`` (source), ``error_type``
``agentstream.consumer.lag``           gauge      ``consumer_group``, ``topic``, ``partition``
``agentstream.sink.rows``              counter    ``table``
``agentstream.sink.redactions``        counter    ``table``, ``kind`` (the sink's own pass)
``agentstream.sink.batch.duration``    histogram  ``table``, ``outcome`` (``ok`` / ``error``)
``agentstream.alerts.notifications``   counter    ``channel``, ``outcome``
``agentstream.alerts.delivery_retries``counter    ``channel``
``agentstream.emitter.events``         counter    ``outcome``, and ``topic`` when delivered
``agentstream.emitter.queued``         gauge      (none)
=====================================  =========  ==========================================

``stage`` is ``processors``, ``sink`` or ``alerts``. The processors count what a
committed transaction consumed and produced (an aborted batch counts nothing),
so their counters are exactly once like their outputs. The Emitter's counters
are read from its stats when the meter collects: nothing is added on the
agent's thread.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = [
    "BATCH_SECONDS_BUCKETS",
    "PipelineMetrics",
    "consumer_lag",
    "pipeline_metrics",
]

#: histogram buckets (seconds) for sink batch writes: 1 ms ... 10 s
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5, 10)
_EMITTER_OUTCOMES = ("failed", "spooled", "replayed", "rejected", "lost")


class _EmitterLike(Protocol):
    def stats(self) -> Any: ...

    def delivered_by_topic(self) -> dict[str, int]: ...


class PipelineMetrics:
    """Every pipeline instrument, from one meter provider (default: the global one).

    Components take one of these (``metrics=``) and default to
    :func:`pipeline_metrics`; a test passes its own, built on an SDK provider
    with an in-memory reader.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter("agentstream", meter_provider=meter_provider)
        self.consumed = meter.create_counter(
            "agentstream.events.consumed", unit="{event}", description="records read, by stage"
        )
        self.produced = meter.create_counter(
            "agentstream.events.produced", unit="{event}", description="records written, by stage"
        )
        self.invalid = meter.create_counter(
            "agentstream.events.invalid",
            unit="{event}",
            description="records sent to the dead-letter topic, by source topic and error",
        )
        self.sink_rows = meter.create_counter(
            "agentstream.sink.rows", unit="{row}", description="rows stored in ClickHouse"
        )
        self.sink_redactions = meter.create_counter(
            "agentstream.sink.redactions",
            unit="{replacement}",
            description="what the sink's own redaction pass replaced (the Emitter missed it)",
        )
        self.sink_batch = meter.create_histogram(
            "agentstream.sink.batch.duration",
            unit="s",
            description="time to write one batch into ClickHouse",
            explicit_bucket_boundaries_advisory=list(BATCH_SECONDS_BUCKETS),
        )
        self.notifications = meter.create_counter(
            "agentstream.alerts.notifications",
            unit="{notification}",
            description="alert notifications by channel and outcome",
        )
        self.component_failures = meter.create_counter(
            "agentstream.worker.component_failures",
            description="worker components that stopped on an error (and were restarted)",
        )
        self.delivery_retries = meter.create_counter(
            "agentstream.alerts.delivery_retries",
            unit="{attempt}",
            description="alert delivery attempts after a failure",
        )
        self._lock = threading.Lock()
        self._lag: dict[str, dict[tuple[str, int], int]] = {}
        self._emitters: weakref.WeakSet[Any] = weakref.WeakSet()
        meter.create_observable_gauge(
            "agentstream.consumer.lag",
            callbacks=[self._observe_lag],
            unit="{message}",
            description="records between a consumer group's position and the partition's end",
        )
        meter.create_observable_counter(
            "agentstream.emitter.events",
            callbacks=[self._observe_emitters],
            unit="{event}",
            description="Emitter events by outcome (delivered ones by topic)",
        )
        meter.create_observable_gauge(
            "agentstream.emitter.queued",
            callbacks=[self._observe_queued],
            unit="{event}",
            description="events in the Emitters' producer queues",
        )

    # -- consumer lag ------------------------------------------------------------------

    def record_lag(self, group: str, lags: Mapping[tuple[str, int], int | None]) -> None:
        """Replace ``group``'s lag per partition (``None``: not known yet, not reported)."""
        known = {tp: lag for tp, lag in lags.items() if lag is not None}
        with self._lock:
            self._lag[group] = known

    def forget_group(self, group: str) -> None:
        """Stop reporting ``group`` (its consumer closed)."""
        with self._lock:
            self._lag.pop(group, None)

    def lag(self, group: str) -> dict[tuple[str, int], int]:
        """The last lag recorded for ``group``."""
        with self._lock:
            return dict(self._lag.get(group, {}))

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            snapshot = [(g, dict(lags)) for g, lags in self._lag.items()]
        for group, lags in snapshot:
            for (topic, partition), lag in lags.items():
                yield Observation(
                    lag, {"consumer_group": group, "topic": topic, "partition": partition}
                )

    # -- emitters ----------------------------------------------------------------------

    def watch(self, emitter: _EmitterLike) -> None:
        """Report ``emitter``'s counters while it lives."""
        self._emitters.add(emitter)

    def _observe_emitters(self, _options: CallbackOptions) -> Iterable[Observation]:
        delivered: dict[str, int] = {}
        totals = dict.fromkeys(_EMITTER_OUTCOMES, 0)
        for emitter in list(self._emitters):
            for topic, count in emitter.delivered_by_topic().items():
                delivered[topic] = delivered.get(topic, 0) + count
            stats = emitter.stats()
            for outcome in _EMITTER_OUTCOMES:
                totals[outcome] += getattr(stats, outcome)
        for topic, count in delivered.items():
            yield Observation(count, {"outcome": "delivered", "topic": topic})
        for outcome, count in totals.items():
            yield Observation(count, {"outcome": outcome})

    def _observe_queued(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sum(e.stats().queued for e in list(self._emitters)))

    # -- helpers for the stages --------------------------------------------------------

    def add_counts(
        self, counter: Any, stage: str, counts: Mapping[str, int], **attributes: str
    ) -> None:
        """Add per-topic ``counts`` to ``counter`` (one call per topic, not per record)."""
        for topic, count in counts.items():
            if count:
                counter.add(count, {"stage": stage, "topic": topic, **attributes})


_default: PipelineMetrics | None = None
_default_lock = threading.Lock()


def pipeline_metrics() -> PipelineMetrics:
    """The process-wide instruments, on the global meter provider."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = PipelineMetrics()
    return _default


def consumer_lag(
    consumer: Any,
    committed: MutableMapping[tuple[str, int], int] | None = None,
    *,
    timeout_s: float = 10.0,
) -> dict[tuple[str, int], int | None]:
    """Per assigned partition of a confluent-kafka ``consumer``: records left to read.

    The end is the high watermark the consumer learnt from its last fetch (no broker
    round trip); ``None`` where that is not known yet (nothing fetched). The start is the
    consumer's position; a partition nothing was consumed from since its assignment has
    none: it starts at the group's committed offset, or at the low watermark when the
    group committed none (or when retention deleted past it), never at the partition's
    beginning (a worker that took over a partition read to its end is not "behind").
    The committed offsets are asked from the broker for those partitions only, once per
    partition when ``committed`` is given (a cache the caller empties on every
    rebalance), else at each call.
    """
    from confluent_kafka import TopicPartition

    assignment = consumer.assignment()
    if not assignment:
        return {}
    positions = consumer.position(assignment)
    cache: MutableMapping[tuple[str, int], int] = {} if committed is None else committed
    unknown = [
        TopicPartition(tp.topic, tp.partition)
        for tp in positions
        if tp.offset < 0 and (tp.topic, tp.partition) not in cache
    ]
    if unknown:
        for tp in consumer.committed(unknown, timeout=timeout_s):
            cache[(tp.topic, tp.partition)] = tp.offset
    lags: dict[tuple[str, int], int | None] = {}
    for tp in positions:
        low, high = consumer.get_watermark_offsets(tp, cached=True)
        key = (tp.topic, tp.partition)
        if high < 0:
            lags[key] = None
        elif high <= low:
            lags[key] = 0
        else:
            start = tp.offset if tp.offset >= 0 else max(cache.get(key, -1), low)
            lags[key] = max(0, high - start)
    return lags
