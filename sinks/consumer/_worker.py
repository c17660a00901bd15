"""The sink worker: Kafka (own consumer group) → :class:`ClickHouseSink`, at least once.

One loop, one thread (the consumer is not shared):

1. ``consume`` at most as many records as the sink has room for; decode each
   with the schemas codec and buffer it for its table (bad records: see
   :mod:`sinks.consumer._routing`);
2. flush what is due (batch full or ``flush_interval_s`` old); refused rows go
   to the dead-letter topic with ClickHouse's reason;
3. commit, per partition, the offset below which everything is stored or
   dead-lettered (dead letters are delivered first). Offsets are committed only
   after the insert succeeded, so a crash replays, and the dedup tokens and the
   ReplacingMergeTree key make the replay harmless.

While ClickHouse fails, the batches stay buffered and are retried with
backoff; once ``max_buffered_rows`` wait, the assigned partitions are paused
(``consume`` keeps the group membership alive) until a flush succeeds. Records
read but not yet taken by the full sink are *held*, in order, and taken first
once there is room; nothing else touches them: an error event from the
consumer is logged (and a fatal one ends the loop), a record that arrives
during the pause (a newly assigned partition) queues behind them, and a revoke
drops only the held records of the revoked partitions (their offsets were
never committed past, so the next owner reads them).

Health: a loop that ends on an exception keeps it in :attr:`SinkWorker.error`
and :meth:`SinkWorker.healthy` turns false; ``stop()`` then ``start()`` runs a
fresh loop that resumes from the committed offsets.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace

from agentstream.core import kafka
from agentstream.core.clock_sanity import check_event_time, plausible_event_times
from agentstream.core.codec import codec_from_settings
from agentstream.core.config import Settings
from agentstream.core.errors import (
    AgentstreamError,
    BackPressure,
    CodecError,
    ContractError,
    DeliveryError,
    EventTimeOutOfRange,
    StorageError,
)
from agentstream.core.metrics import PipelineMetrics, consumer_lag, pipeline_metrics
from agentstream.core.tracing import consumer_span
from agentstream.schemas import AvroCodec, utc_now
from agentstream.sinks._base import FlushReport, Position, Rejected
from agentstream.sinks.clickhouse import (
    ClickHouseBackend,
    ClickHouseSink,
    Row,
    migrate,
    open_backend,
)
from agentstream.sinks.consumer._dead_letters import DeadLetterOutbox
from agentstream.sinks.consumer._loop import BackgroundLoop, SinkHealth, SinkStats
from agentstream.sinks.consumer._routing import Route, routes

__all__ = ["SinkHealth", "SinkStats", "SinkWorker"]

log = logging.getLogger("agentstream.sink")
_TRACER = trace.get_tracer("agentstream.sink")

_MAX_CONSUME = 1000
#: a repeated consumer error is logged as a warning at most this often
_WARN_EVERY_S = 30.0


class SinkWorker(BackgroundLoop):
    """Consumes the event and processor topics and stores them in ClickHouse.

    ``backend``: share an open backend (the worker process's, or a test's);
    otherwise the worker opens ``settings.clickhouse`` and closes it at the end.
    Use :meth:`start` / :meth:`stop` for a background thread, or
    :meth:`run_until` to drive the loop in the calling thread.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        backend: ClickHouseBackend | None = None,
        codec: AvroCodec | None = None,
        streams: Sequence[str] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        run_migrations: bool = True,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.stats = SinkStats()
        self.metrics = metrics or pipeline_metrics()
        self._tally_in: dict[str, int] = {}
        self._backend = backend
        self._owns_backend = backend is None
        self._codec = codec or codec_from_settings(settings, role="consumer")
        self._routes: dict[str, Route] = routes(
            settings.topics, tuple(streams) if streams is not None else None
        )
        self._consumer_overrides = dict(consumer_config or {})
        self._run_migrations = run_migrations
        self._invalid_topic = settings.topics.name("invalid")
        self._poll_s = min(0.5, settings.sink.flush_interval_s / 2)
        self._sink: ClickHouseSink | None = None
        self._consumer: Any = None
        self._outbox: DeadLetterOutbox | None = None
        self._next: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        #: records read but not yet taken by the (full) sink, in consumption order
        self._held: deque[Any] = deque()
        self._paused = False
        self._aborting = False
        self._fatal: str | None = None
        self._warned: dict[str, float] = {}
        self._failing_since: float | None = None
        self._last_commit = 0.0
        self._tick()
        BackgroundLoop.__init__(self, "agentstream-sink", log)

    # -- lifecycle -----------------------------------------------------------

    @property
    def topics(self) -> list[str]:
        """The topics this worker consumes."""
        return list(self._routes)

    def open(self) -> None:
        """Connect: backend (migrated), sink, consumer (subscribed), dead-letter producer."""
        if self._consumer is not None:
            return

        self._aborting = False
        self._reset()
        if self._backend is None:
            self._backend = open_backend(self.settings.clickhouse)
        if self._run_migrations:
            migrate(self._backend, self.settings)
        self._sink = ClickHouseSink(self._backend, self.settings.sink)
        extra: dict[str, Any] = {
            "group.id": self.settings.sink.consumer_group,
            "enable.auto.offset.store": False,
            "error_cb": self._on_error,
            **self._consumer_overrides,
        }
        self._consumer = kafka.consumer(self.settings, "sink", extra)
        self._outbox = DeadLetterOutbox(
            kafka.producer(self.settings, "sink"),
            self._codec,
            self._invalid_topic,
            self.stats,
            self.metrics,
        )
        self._consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self._last_commit = time.monotonic()

    def _reset(self) -> None:
        """Forget the previous loop's positions: a new consumer starts at the committed offsets."""
        self._held.clear()
        self._next.clear()
        self._committed.clear()
        self._paused = False
        self._fatal = None
        self._failing_since = None

    def close(self) -> None:
        """Stop gracefully: write what is buffered, commit, leave the group."""
        try:
            if self._consumer is not None and self._sink is not None:
                self._finish_flush(force=True)
                self._commit(force=True)
        finally:
            self._teardown()

    def abort(self) -> None:
        """Stop like a crash: nothing more is written or committed (buffers are lost)."""
        self._aborting = True
        self._held.clear()
        self._teardown()

    def _teardown(self) -> None:
        self._aborting = True  # the revoke callback of close() must not write or commit
        self.metrics.forget_group(self.settings.sink.consumer_group)
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception as exc:  # closing is best effort
                log.warning("sink consumer close failed: %s", exc)
            self._consumer = None
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
        if self._owns_backend and self._backend is not None:
            self._backend.close()
            self._backend = None
        self._sink = None

    # -- the loop --------------------------------------------------------------

    def step(self) -> None:
        """One round: consume what fits, flush what is due, commit what is stored."""
        sink = self._require_sink()
        self._tick()
        self._take_held()
        if self._paused and sink.room > 0 and not self._held:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
        want = 1 if self._paused else max(1, min(sink.room, _MAX_CONSUME))
        messages = self._consumer.consume(num_messages=want, timeout=self._poll_s)
        if self._fatal is not None:
            raise AgentstreamError(f"the sink's Kafka consumer failed: {self._fatal}")
        if messages:
            self._tick()  # they may have been produced while consume() waited
            self._receive(messages)
            self.metrics.add_counts(self.metrics.consumed, "sink", self._tally_in)
            self._tally_in.clear()
        if sink.room == 0 and not self._paused:
            self._pause()
        if sink.due():
            self._absorb(sink.flush())
        now = time.monotonic()
        if now - self._last_commit >= self.settings.sink.flush_interval_s:
            self._commit()

    def _tick(self) -> None:
        """Now, and the event times plausible at it (clock sanity: once a batch, not a record)."""
        self._now = utc_now()
        self._plausible = plausible_event_times(self._now, self.settings)

    def _require_sink(self) -> ClickHouseSink:
        if self._sink is None or self._consumer is None:
            raise RuntimeError("the sink worker is not open")
        return self._sink

    def _pause(self) -> None:
        self._consumer.pause(self._consumer.assignment())
        self._paused = True
        self.stats.pauses += 1
        log.warning("sink buffer full (%d rows): consumption paused", self._require_sink().buffered)

    def _receive(self, messages: Sequence[Any]) -> None:
        """Queue the records behind those held (error events are only reported), take them."""
        arrived = False
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(error)
            else:
                self._held.append(message)
                arrived = True
        if arrived and self._paused:
            # a record during a pause: its partition was assigned since; pause it too
            self._consumer.pause(self._consumer.assignment())
        self._take_held()

    def _take_held(self) -> None:
        """Hand the held records to the sink in order, until it is full."""
        held = self._held
        while held:
            try:
                self._handle(held[0])
            except BackPressure:
                if not self._paused:
                    self._pause()
                return
            held.popleft()

    def _consumer_error(self, error: Any) -> None:
        from confluent_kafka import KafkaError

        if error.fatal():
            raise AgentstreamError(f"the sink's Kafka consumer failed: {error.str()}")
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self.stats.consumer_errors += 1
        self._warn(error.str(), f"sink consumer: {error.str()} ({len(self._held)} records held)")

    def _health_detail(self) -> tuple[bool, float]:
        failing = self._failing_since
        return self._paused, time.monotonic() - failing if failing is not None else 0.0

    def _on_error(self, error: Any) -> None:
        """librdkafka's error callback (broker down, transport errors): log; fatal ends the loop."""
        if error.fatal():
            self._fatal = error.str()
        self.stats.consumer_errors += 1
        self._warn(error.str(), f"sink consumer: {error.str()}")

    def _warn(self, key: str, text: str) -> None:
        """Log ``text`` as a warning at most every 30 s per ``key`` (an outage repeats errors)."""
        now = time.monotonic()
        if now - self._warned.get(key, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._warned[key] = now
            log.warning("%s", text)
        else:
            log.debug("%s", text)

    def _handle(self, message: Any) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        route = self._routes[topic]
        value: bytes | None = message.value()
        try:
            if value is None:
                raise CodecError("empty record (tombstone)")
            record = self._codec.decode_model(value, route.model)
            event_time = getattr(record, "event_time", None)
            earliest, latest = self._plausible
            # the processors' rule (absurd times live in invalid_events), against this round's now
            if event_time is not None and not earliest <= event_time <= latest:
                reason = check_event_time(event_time, self._now, self.settings)
                if reason is not None:
                    raise EventTimeOutOfRange(reason)
        except (CodecError, ContractError) as exc:
            self._bad(route, message, exc)
        else:
            sink = self._require_sink()
            position = Position(topic, partition, offset)
            headers = message.headers()
            if headers:  # a traced event: the sink's span joins the producer's trace
                with consumer_span(
                    f"sink {route.stream}",
                    headers,
                    tracer=_TRACER,
                    attributes={"messaging.destination.name": topic},
                ):
                    sink.add_record(record, position, raw=value, key=message.key())
            else:
                sink.add_record(record, position, raw=value, key=message.key())
        self.stats.consumed += 1
        self._tally_in[topic] = self._tally_in.get(topic, 0) + 1
        self._next[(topic, partition)] = offset + 1

    def _bad(self, route: Route, message: Any, exc: Exception) -> None:
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        if route.on_bad == "skip":
            self.stats.skipped += 1
            log.debug(
                "sink: skipped bad record %s (the contract gate dead-letters it): %s", where, exc
            )
        elif route.on_bad == "drop":
            self.stats.dropped += 1
            log.error("sink: bad record on the dead-letter topic %s dropped: %s", where, exc)
        else:
            self._require_outbox().send(
                topic=message.topic(),
                partition=message.partition(),
                offset=message.offset(),
                key=message.key(),
                raw=message.value() or b"",
                reason=f"sink cannot decode: {exc}",
                error_type=type(exc).__name__,
            )

    def _absorb(self, report: FlushReport[Row]) -> None:
        """Count a flush, dead-letter what ClickHouse refused, log a failure."""
        metrics = self.metrics
        for table, rows in report.written.items():
            self.stats.stored[table] = self.stats.stored.get(table, 0) + rows
            metrics.sink_rows.add(rows, {"table": table})
        if self._sink is not None:
            for table, kinds in self._sink.take_redactions().items():
                for kind, n in kinds.items():
                    metrics.sink_redactions.add(n, {"table": table, "kind": kind})
        for timing in report.timings:
            metrics.sink_batch.record(
                timing.seconds, {"table": timing.key, "outcome": "ok" if timing.ok else "error"}
            )
        self.stats.flushes += report.batches
        for rejected in report.rejected:
            self._rejected(rejected)
        if report.error is not None:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            self.stats.write_failures += 1
            sink = self._require_sink()
            log.warning(
                "sink: insert failed, retrying in %.2fs (%d rows buffered): %s",
                sink.retry_after(),
                sink.buffered,
                report.error,
            )
        elif report.batches:
            self._failing_since = None
            self._commit()

    def _rejected(self, rejected: Rejected[Row]) -> None:
        pos, row = rejected.position, rejected.item
        if pos is None or pos.topic == self._invalid_topic or row.raw is None:
            self.stats.dropped += 1
            log.error("sink: refused row of %s dropped: %s", rejected.key, rejected.reason)
            return
        self._require_outbox().send(
            topic=pos.topic,
            partition=pos.partition,
            offset=pos.offset,
            key=row.key,
            raw=row.raw,
            reason=rejected.reason,
            error_type=rejected.error_type,
            run_id=row.run_id,
            tenant_id=row.tenant_id,
            event_id=row.event_id,
        )

    def _require_outbox(self) -> DeadLetterOutbox:
        if self._outbox is None:
            raise RuntimeError("the sink worker is not open")
        return self._outbox

    def _finish_flush(self, *, force: bool) -> None:
        report = self._require_sink().flush(force=force)
        self._absorb(report)
        report.raise_for_error()

    # -- offsets ---------------------------------------------------------------

    def committable(self) -> dict[tuple[str, int], int]:
        """Per partition: the offset below which every record is stored or dead-lettered."""
        low = self._require_sink().lowest_buffered_offsets()
        return {tp: min(low.get(tp, nxt), nxt) for tp, nxt in self._next.items()}

    def _commit(self, *, force: bool = False) -> None:
        from confluent_kafka import TopicPartition

        self._last_commit = time.monotonic()
        self._record_lag()
        todo = {tp: off for tp, off in self.committable().items() if self._committed.get(tp) != off}
        if not todo and not force:
            return
        if self._outbox is not None:
            self._outbox.settle()  # dead letters first: offsets then move past their records
        if not todo:
            return
        try:
            self.commit_offsets([TopicPartition(t, p, off) for (t, p), off in todo.items()])
        except StorageError as exc:  # e.g. a rebalance is under way: try again next round
            log.warning("sink: %s; retrying at the next commit", exc)
            return
        self._committed.update(todo)
        self.stats.commits += 1

    def _record_lag(self) -> None:
        from confluent_kafka import KafkaException

        try:
            lags = consumer_lag(self._consumer)
        except KafkaException as exc:
            log.debug("sink: consumer lag unknown: %s", exc)
            return
        self.metrics.record_lag(self.settings.sink.consumer_group, lags)

    def commit_offsets(self, offsets: list[Any]) -> None:
        """Commit ``offsets`` (confluent ``TopicPartition`` s) synchronously."""
        from confluent_kafka import KafkaException

        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise StorageError(f"offset commit failed: {exc}") from exc

    # -- rebalancing -----------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        log.info("sink assigned %d partition(s)", len(partitions))
        if self._paused:
            self._consumer.pause(partitions)

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._aborting or self._sink is None:
            return
        gone = {(p.topic, p.partition) for p in partitions}
        try:
            self._finish_flush(force=True)
            self._commit()
        except (StorageError, DeliveryError) as exc:
            log.warning(
                "sink: could not store before a rebalance, records will be replayed: %s", exc
            )
        self._forget(gone)

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._sink is not None:
            self._forget({(p.topic, p.partition) for p in partitions})

    def _forget(self, gone: set[tuple[str, int]]) -> None:
        if self._sink is not None:
            self._sink.discard(gone)
        self._held = deque(m for m in self._held if (m.topic(), m.partition()) not in gone)
        for tp in gone:
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
