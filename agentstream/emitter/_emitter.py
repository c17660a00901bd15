"""The thin producer: ``Emitter`` — validate, redact, encode, enqueue; never block.

By default the caller's thread only checks the event and queues it; the encoder
thread (:mod:`._encoder`) validates, redacts, encodes and hands the message to
confluent-kafka's local queue. With ``emitter.durability = "disk"`` the caller's
thread does it all and first writes the message to a write-ahead log
(:mod:`._wal`). One background thread
(``agentstream-emitter``) serves delivery reports and owns the spool:

* a delivery that fails for a reason a retry may fix (timed out while the broker
  was away, the topic does not exist, ...) is appended to the spool — one
  ``fsync`` per batch — and the emitter starts *diverting*: new events go
  straight to the spool (in order) instead of piling up in memory behind a
  broker that is gone;
* a full local queue (``BufferError``) diverts that event, and the later ones;
* a failure no retry can fix (message too large, not authorised) goes to a
  ``rejected-`` segment and is logged: kept, not replayed on its own;
* while the spool holds events (also at start, when an earlier process left
  some: diverting starts then), the broker is probed every
  ``emitter.replay_interval_s``; when it answers, the spool is replayed in order
  (:class:`~agentstream.emitter._replay.ReplayJob`), and diverting stops only
  when a round finds nothing left to replay — so a run's events never overtake
  its earlier, spooled ones;
* a spool write the disk refuses (full, read-only) loses the event (memory
  durability): logged at CRITICAL and counted in ``stats().lost``.

What a crash of the process can lose, per ``emitter.durability``, is in the
README ("Durability") and :mod:`._wal`.

``flush(timeout)`` waits until every emitted event is delivered or spooled;
``close()`` flushes, spools what is still queued and stops the thread. Every
open emitter is closed at interpreter exit (flushing up to
``emitter.flush_at_exit_s``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from confluent_kafka import KafkaException, Producer

from agentstream.core.codec import codec_from_settings
from agentstream.core.config import Settings, get_settings
from agentstream.core.errors import ConfigError, DeliveryError
from agentstream.core.metrics import pipeline_metrics
from agentstream.core.redact import Redactor
from agentstream.emitter._core import Classifier, Headers
from agentstream.emitter._encoder import EncodingEmitter
from agentstream.emitter._producer import (
    EmitterStats,
    kafka_producer_config,
    track,
    untrack,
)
from agentstream.emitter._replay import (
    MissingTopics,
    ReplayJob,
    is_missing_topic,
    is_permanent,
    record_of,
)
from agentstream.emitter._replaying import SpoolReplaying
from agentstream.emitter._spool import Spool, SpoolRecord
from agentstream.emitter._wal import WalSegment, WriteAheadLog
from agentstream.schemas import AgentEvent, AvroCodec

__all__ = ["Emitter", "EmitterStats", "kafka_producer_config"]

_log: Final = logging.getLogger("agentstream.emitter")
#: an event on its way to the spool, and the write-ahead log segment holding it (disk mode)
_Entry = tuple[SpoolRecord, "WalSegment | None"]
_kafka_log: Final = logging.getLogger("agentstream.kafka")
#: how long the background thread waits for delivery reports per turn
_POLL_S: Final = 0.05
#: broker warnings (all brokers down, ...) are logged at most this often
_WARN_EVERY_S: Final = 30.0


class Emitter(SpoolReplaying, EncodingEmitter):
    """Sends agent events to Kafka; see the module documentation for the guarantees.

    ``settings`` defaults to :func:`agentstream.core.config.get_settings`; ``codec`` to
    the framing the settings ask for; ``producer_config`` adds or overrides
    librdkafka settings; ``redactor`` replaces the one built from the settings
    (``None``: no redaction); ``classify`` replaces :func:`classify_error`.
    ``replay_on_start=False`` leaves an existing spool alone until something fails.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        codec: AvroCodec | None = None,
        producer_config: dict[str, Any] | None = None,
        redactor: Redactor | bool | None = True,
        classify: Classifier | None = None,
        replay_on_start: bool = True,
    ) -> None:
        settings = settings if settings is not None else get_settings()
        if codec is None:
            codec = codec_from_settings(settings)
        elif codec.framing == "confluent":
            codec.register_all()
        super().__init__(settings, codec=codec, redactor=redactor, classify=classify)
        es = settings.emitter
        self._conf = kafka_producer_config(settings)
        self._conf.update(
            {
                "on_delivery": self._on_delivery,
                "error_cb": self._on_error,
                "logger": _kafka_log,
                # connection failures come through error_cb (rate-limited), not every retry
                "log_level": 2,
            }
        )
        self._conf.update(producer_config or {})
        try:
            self._producer: Any = Producer(self._conf)
        except KafkaException as exc:
            raise ConfigError(f"invalid Kafka producer configuration: {exc.args[0]}") from exc
        self.spool = Spool(es.spool_dir, segment_bytes=es.spool_segment_bytes)
        self._interval = es.replay_interval_s
        self._queue_max = es.queue_max_messages
        self._retired: list[tuple[Any, float]] = []
        self._probe_timeout = min(es.replay_interval_s, 2.0)
        # the write-ahead log of durability "disk" (None: "memory")
        self._wal: WriteAheadLog | None = None
        self._sync_each = es.durability == "disk" and es.wal_fsync_interval_ms == 0
        if es.durability == "disk":
            self._wal = WriteAheadLog(
                self.spool,
                segment_bytes=es.wal_segment_bytes,
                fsync_interval_s=es.wal_fsync_interval_ms / 1000,
                reporter=self._reporter,
            )
        # (event, its log segment) written by callers, drained by the background thread
        self._overflow: deque[_Entry] = deque()
        # touched only by the thread that polls (the background thread, then close())
        self._failed: list[_Entry] = []
        self._rejected_records: list[_Entry] = []
        self._writing = 0
        self._replay: ReplayJob | None = None
        self._pending_spool = replay_on_start and self.spool.has_waiting()
        self._next_replay = time.monotonic()
        self._last_warning = 0.0
        self._fatal: Any = None
        #: topics the broker said do not exist (replays wait for them); those logged
        self._missing = MissingTopics(settings.kafka.bootstrap_servers, self.spool.directory)
        # events of a run may wait in the spool: later ones go there too, until it is drained
        self._diverting = self._pending_spool
        self._closed = False
        self._close_lock = threading.Lock()
        self._route_lock = threading.Lock()
        self._emitted = self._diverted = self._delivered = self._failures = self._spooled = 0
        self._replayed = self._rejected = self._lost = 0
        #: delivered per topic (written by the background thread only)
        self._delivered_topics: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentstream-emitter", daemon=True)
        self._thread.start()
        self._start_encoder(self._route)
        track(self)
        pipeline_metrics().watch(self)

    def __repr__(self) -> str:
        return f"Emitter(bootstrap={self.settings.kafka.bootstrap_servers!r})"

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the caller's side -------------------------------------------------------------------

    def _send(
        self, topic: str, key: bytes, value: bytes, headers: Headers, event: AgentEvent
    ) -> None:
        self._check_open()
        self._route(topic, key, value, headers)

    def _route(self, topic: str, key: bytes, value: bytes, headers: Headers) -> None:
        """To the producer, or to the spool while diverting (and the write-ahead log)."""
        # one lock for the route decision: diverting is switched off (background thread)
        # only while no caller is between reading the flag and queueing its event
        wal = self._wal
        with self._route_lock:
            self._emitted += 1
            segment = None
            if wal is not None:
                segment, size = wal.try_append(SpoolRecord(topic, key, value, tuple(headers or ())))
            if self._diverting:
                self._divert(topic, key, value, headers, segment)
            else:
                try:
                    if segment is None:
                        self._producer.produce(topic, value, key, headers=headers)
                    else:
                        self._producer.produce(
                            topic, value, key, headers=headers, on_delivery=segment.report
                        )
                except BufferError:  # the local queue is full: never block, spool it
                    self._diverting = True  # and the run's later events after it
                    self._divert(topic, key, value, headers, segment)
                except KafkaException as exc:  # e.g. the producer hit a fatal error: keep it
                    _log.warning("agentstream: produce failed (%s); spooling it", exc.args[0])
                    self._diverting = True
                    self._divert(topic, key, value, headers, segment)
        if self._sync_each and segment is not None and wal is not None:
            wal.sync_to(segment, size)  # power-loss safe before emit returns

    def _divert(
        self, topic: str, key: bytes, value: bytes, headers: Headers, segment: WalSegment | None
    ) -> None:
        """To the spool (through the background thread), not to the producer; lock held."""
        # appended before it stops counting as queued: flush() never sees it nowhere
        self._overflow.append((SpoolRecord(topic, key, value, tuple(headers or ())), segment))
        self._diverted += 1

    def _queued(self) -> int:
        """Events handed to the producer whose delivery report has not come yet."""
        return self._emitted - self._diverted - self._delivered - self._failures

    def delivered_by_topic(self) -> dict[str, int]:
        """Events delivered per topic (the ``agentstream.emitter.events`` metric)."""
        return dict(self._delivered_topics)

    def stats(self) -> EmitterStats:
        """A snapshot of the counters."""
        encoder = self._encoder
        encoding = encoder.pending() if encoder is not None else 0
        return EmitterStats(
            emitted=self._emitted + encoding,
            delivered=self._delivered,
            failed=self._failures,
            spooled=self._spooled,
            replayed=self._replayed,
            rejected=self._rejected,
            lost=self._lost + (encoder.lost if encoder is not None else 0),
            queued=self._queued(),
            diverting=self._diverting,
            encoding=encoding,
            invalid=encoder.invalid if encoder is not None else 0,
        )

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every emitted event is delivered or spooled; the number still pending.

        ``timeout`` in seconds (None: ``emitter.delivery_timeout_ms`` plus a margin).
        Spooled events count as done: they are durable and replayed later.
        """
        if timeout is None:
            timeout = self.settings.emitter.delivery_timeout_ms / 1000 + 5.0
        deadline = time.monotonic() + timeout
        while True:
            remaining = self._pending()
            if remaining == 0 or time.monotonic() >= deadline:
                return remaining
            if not self._thread.is_alive():  # closed: nobody serves reports any more
                return remaining
            time.sleep(0.005)

    def _pending(self) -> int:
        encoder = self._encoder  # read first: an event leaves it before the producer counts it
        return (
            (encoder.pending() if encoder is not None else 0)
            + self._queued()
            + len(self._overflow)
            + len(self._failed)
            + len(self._rejected_records)
            + self._writing
        )

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` s), spool whatever is still queued, stop the thread.

        Messages purged from the queue while in flight may also have reached the
        broker; they are spooled and replayed anyway (a duplicate the sink drops by
        ``event_id``) rather than risk losing them.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        untrack(self)
        if timeout is None:
            timeout = self.settings.emitter.flush_at_exit_s
        if self._encoder is not None:
            self._encoder.close()  # every accepted event to the producer (or the spool)
        self.flush(timeout)
        self._stop.set()
        self._thread.join()
        self._purge(self._producer)
        if self._retired:
            self._purge_retired()
        if self._replay is not None:
            self._replay.abandon()
            self._replay = None
        self._drain()
        if self._wal is not None:
            self._wal.maintain(final=True)
            self._wal.close()
        self.spool.close()
        stats = self.stats()
        if stats.queued:
            _log.critical("agentstream: %d events were still queued at close", stats.queued)
        if stats.spooled or stats.lost:
            _log.warning("agentstream: emitter closed: %s", stats)

    # -- the background thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(_POLL_S)
                self._drain()
                if self._fatal is not None:
                    self._recreate_producer()
                if self._retired:
                    self._purge_retired()
                self._replay_step()
                if self._wal is not None:
                    self._wal.maintain()
            except Exception:  # pragma: no cover - keep serving reports whatever happens
                _log.exception("agentstream: emitter background loop failed; continuing")
                time.sleep(_POLL_S)

    def _reporter(self, segment: WalSegment) -> Callable[[Any, Any], None]:
        """The delivery callback of the events logged in ``segment``."""

        def report(error: Any, message: Any) -> None:
            self._on_delivery(error, message, segment)

        return report

    def _on_delivery(self, error: Any, message: Any, segment: WalSegment | None = None) -> None:
        if error is None:
            self._delivered += 1
            topic = message.topic()
            self._delivered_topics[topic] = self._delivered_topics.get(topic, 0) + 1
            if segment is not None:
                segment.settled += 1  # acknowledged: its log entry may go
            return
        # kept in a list before it stops counting as queued (see flush)
        if is_permanent(error):
            self._rejected_records.append((record_of(message), segment))
            self._failures += 1
            self._rejected += 1
            _log.error(
                "agentstream: the broker refused an event for good (%s); kept in a rejected- "
                "spool segment",
                error.str(),
            )
            return
        record = record_of(message)
        if is_missing_topic(error):
            self._missing.add(record.topic)
        self._failed.append((record, segment))
        self._failures += 1
        self._diverting = True

    def _on_replay_error(self, error: Any, record: SpoolRecord) -> None:
        if is_missing_topic(error):
            self._missing.add(record.topic)

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            _log.critical("agentstream: fatal producer error %s; recreating it", error.str())
            self._fatal = error
            self._diverting = True
            return
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            _log.warning("agentstream: Kafka: %s", error.str())

    def _drain(self) -> None:
        """Spool the failed and diverted events (one fsync per batch)."""
        overflow = self._overflow
        diverted = len(overflow)
        batch, rejected = self._failed, self._rejected_records
        if not (diverted or batch or rejected):
            return
        # flush() counts them as pending until they are on disk
        self._writing = len(batch) + diverted + len(rejected)
        self._failed, self._rejected_records = [], []
        for _ in range(diverted):
            batch.append(overflow.popleft())
        try:
            self._write(batch, rejected=False)
            self._write(rejected, rejected=True)
        finally:
            self._writing = 0

    def _write(self, batch: list[_Entry], *, rejected: bool) -> None:
        if not batch:
            return
        try:
            self.spool.append([record for record, _ in batch], rejected=rejected)
        except DeliveryError as exc:
            logged = sum(1 for _, segment in batch if segment is not None)
            self._lost += len(batch) - logged
            if logged:  # not settled: their log segment stays, replayed after a restart
                _log.critical(
                    "agentstream: %s; %d event(s) stay in the write-ahead log until a restart "
                    "replays it, %d EVENTS LOST",
                    exc,
                    logged,
                    len(batch) - logged,
                )
            else:
                _log.critical("agentstream: %d EVENTS LOST: %s", len(batch), exc)
            return
        for _, segment in batch:
            if segment is not None:
                segment.settled += 1  # durable in the spool: its log entry may go
        self._spooled += len(batch)
        if not rejected:
            self._pending_spool = True
