"""The processor loop: consume → gate → lifecycle / rollups / alerts → produce, transactionally.

One Kafka transaction per batch holds the outputs (lifecycle, dead letters,
rollups, alerts), the state changes (changelog topic) and the consumer offsets:
a worker killed at any point restarts from the last committed batch with the
state of that batch, so outputs are exactly once for read_committed consumers
(the sink, the dispatcher, the demo view).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from opentelemetry import trace

from agentstream.core.catalog import STREAMS
from agentstream.core.codec import codec_from_settings
from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError, CodecError, ContractError
from agentstream.core.metrics import PipelineMetrics, consumer_lag, pipeline_metrics
from agentstream.core.tracing import consumer_span, trace_headers
from agentstream.processors._clock import now_us, seconds_to_us, to_us
from agentstream.processors.alerts import AlertEvaluator, rules_from_settings
from agentstream.processors.engine._state import ChangelogStore, TrackedDict, read_changelog
from agentstream.processors.lifecycle import (
    Accepted,
    Duplicate,
    RunState,
    TimeoutTracker,
    apply,
    observe_tool_call,
)
from agentstream.processors.rollups import RollupAggregator
from agentstream.schemas import (
    InvalidEvent,
    ModelCall,
    Record,
    ReviewDecision,
    Rollup,
    StateTransition,
    ToolCall,
    encode_model,
)

__all__ = ["EngineStats", "ProcessorEngine"]

log = logging.getLogger("agentstream.processors")
_TRACER = trace.get_tracer("agentstream.processors")
_INVALID_NS = uuid.UUID("5f0b6d1e-3c2a-4e59-9a57-1c1f5b7a0d42")
#: the agent streams the processors read, and their models
_INPUTS: dict[str, type[Record]] = {s.name: s.model for s in STREAMS if s.writer == "agent"}


@dataclass
class EngineStats:
    """Counters, for logs, tests and the bench."""

    consumed: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    invalid: int = 0
    timeouts: int = 0
    rollups: int = 0
    alerts: int = 0
    batches: int = 0


class ProcessorEngine:
    """The stream processors in one loop; :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        batch_size: int = 2_000,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.stats = EngineStats()
        self._codec = codec_from_settings(settings, role="consumer")  # Confluent framing too
        self.metrics = metrics or pipeline_metrics()
        #: per topic, this batch's records in and out, and dead letters by (source, error)
        self._tally_in: dict[str, int] = {}
        self._tally_out: dict[str, int] = {}
        self._tally_invalid: dict[tuple[str, str], int] = {}
        topics = settings.topics
        self._topic_stream = {topics.name(stream): stream for stream in _INPUTS}
        self._out = {s: topics.name(s) for s in ("lifecycle", "invalid", "rollups", "alerts")}
        app = settings.worker.app_id
        self._state_topic = f"{topics.prefix}{app}-state"
        self._batch_size = batch_size
        kafka = settings.kafka.confluent_config()
        self._kafka = kafka
        self._group = settings.worker.processors_group
        self._consumer = Consumer(
            {
                **kafka,
                "group.id": self._group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "range",
            }
        )
        self._producer = Producer(
            {
                **kafka,
                "transactional.id": self._group,
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                "partitioner": "murmur2_random",
            }
        )
        self._changelog = ChangelogStore(self._state_topic)
        self._runs = TrackedDict()
        self._alert_state = TrackedDict()
        self._tracker = TimeoutTracker(settings.lifecycle)
        self._rollups = RollupAggregator(settings.rollups, event_watermark=False)
        self._evaluator = AlertEvaluator(rules_from_settings(settings), self._alert_state)
        self._lateness_us = seconds_to_us(settings.rollups.allowed_lateness_s)
        self._grace_us = seconds_to_us(settings.lifecycle.timeout_grace_s)
        self._last_input = time.monotonic()
        self._positions: dict[tuple[str, int], int] = {}
        #: per input partition: newest event time read (µs), and when (monotonic s)
        self._partition_max: dict[tuple[str, str], tuple[int, float]] = {}
        self._low_watermark: int | None = None
        self._unread: set[tuple[str, str]] = set()
        self._unread_empty = False
        #: False until a refresh found every assigned partition read to its end
        self._caught_up = False
        self._closed_through = 0
        self._next_timer = 0.0

    @property
    def inputs(self) -> list[str]:
        """The topics the processors consume."""
        return list(self._topic_stream)

    # -- start-up ------------------------------------------------------------

    def open(self, ensure_topic: Callable[[str], None] | None = None) -> None:
        """Restore the state, start the transactional producer, subscribe."""
        if ensure_topic is not None:
            ensure_topic(self._state_topic)
        state = read_changelog(self._kafka, self._state_topic)
        runs = {k[4:]: v for k, v in state.items() if k.startswith("run:")}
        self._runs = TrackedDict(runs)
        self._alert_state = TrackedDict(
            {k[6:]: v for k, v in state.items() if k.startswith("alert:")}
        )
        self._evaluator.store = self._alert_state
        cells = [(k[5:], v) for k, v in state.items() if k.startswith("cell:")]
        if cells:
            self._rollups = RollupAggregator.restore(
                self.settings.rollups, cells, event_watermark=False
            )
        tracker = state.get("tracker") or {}
        self._tracker = TimeoutTracker.rebuild(
            self.settings.lifecycle,
            [cast(RunState, run) for run in runs.values()],
            tracker.get("clock"),
        )
        restored = time.monotonic()
        self._partition_max = {
            tuple(key.rsplit("|", 1)): (value, restored)
            for key, value in tracker.get("partitions", {}).items()
        }
        log.info(
            "restored %d runs, %d rollup cells, %d alert states",
            len(runs),
            len(cells),
            len(self._alert_state),
        )
        try:
            self._producer.init_transactions(30)
        except KafkaException as exc:
            raise AgentstreamError(f"processors: cannot start transactions: {exc}") from exc
        self._consumer.subscribe(list(self._topic_stream))

    def close(self) -> None:
        self.metrics.forget_group(self._group)
        self._consumer.close()
        self._producer.flush(10)

    # -- the loop --------------------------------------------------------------

    def run(self, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Poll until ``stop`` is set; ``on_ready`` once partitions are assigned."""
        ready = False
        while not stop.is_set():
            self.poll(0.2)
            if not ready and self._consumer.assignment():
                ready = True
                if on_ready is not None:
                    on_ready()

    def poll(self, timeout: float) -> int:
        """Consume one batch (waiting up to ``timeout`` s) and process it; the records read."""
        messages = self._consumer.consume(self._batch_size, timeout)
        self.step(messages)
        return len(messages)

    def step(self, messages: list[Any]) -> None:
        """One transaction: the batch, the timers, closed windows, state and offsets."""
        now = time.monotonic()
        timer_due = now >= self._next_timer
        if not messages and not timer_due:
            return
        if messages or timer_due:
            self._refresh_unread()
        self._producer.begin_transaction()
        try:
            for message in messages:
                self._handle(message)
            if messages:
                self._last_input = now
            if timer_due:
                self._next_timer = now + self.settings.lifecycle.timer_interval_s
                self._timers()
            self._close_windows()
            self._write_state()
            offsets = [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]
            if offsets:
                self._producer.send_offsets_to_transaction(
                    offsets, self._consumer.consumer_group_metadata(), 30
                )
            self._producer.commit_transaction(60)
        except KafkaException as exc:
            self._producer.abort_transaction(30)
            self._clear_tallies()
            raise AgentstreamError(f"processors: transaction failed: {exc}") from exc
        self._positions.clear()
        self.stats.batches += 1
        self._publish_tallies()

    def _publish_tallies(self) -> None:
        """Count what the committed transaction read and wrote (once per topic, not record)."""
        metrics = self.metrics
        metrics.add_counts(metrics.consumed, "processors", self._tally_in)
        metrics.add_counts(metrics.produced, "processors", self._tally_out)
        for (topic, error_type), count in self._tally_invalid.items():
            metrics.invalid.add(
                count, {"stage": "processors", "topic": topic, "error_type": error_type}
            )
        self._clear_tallies()

    def _clear_tallies(self) -> None:
        self._tally_in.clear()
        self._tally_out.clear()
        self._tally_invalid.clear()

    def _send(self, stream: str, key: str, record: Record, headers: Any = None) -> None:
        topic = self._out[stream]
        self._producer.produce(topic, encode_model(record), key.encode(), headers=headers)
        self._tally_out[topic] = self._tally_out.get(topic, 0) + 1

    def _handle(self, message: Any) -> None:
        if message.error():
            if message.error().fatal():
                raise AgentstreamError(f"processors: consumer failed: {message.error().str()}")
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        self._positions[(topic, partition)] = offset + 1
        self.stats.consumed += 1
        self._tally_in[topic] = self._tally_in.get(topic, 0) + 1
        stream = self._topic_stream[topic]
        value = message.value()
        try:
            if value is None:
                raise CodecError("empty record (tombstone)")
            record = self._codec.decode_model(value, _INPUTS[stream])
        except (CodecError, ContractError) as exc:
            self._dead_letter(message, str(exc), type(exc).__name__)
            return
        headers = message.headers()
        if headers:
            with consumer_span(f"process {stream}", headers, tracer=_TRACER):
                self._route(stream, record, message, trace_headers())
        else:
            self._route(stream, record, message, None)

    def _low_mark(self, message: Any, event_us: int) -> int | None:
        """The low watermark: the oldest "newest event time" over the input partitions.

        Partitions are read in order, but one may run ahead of another (fetch sizes,
        batching); the slowest one bounds what has surely been seen. A partition with
        nothing left to read (:meth:`_refresh_unread`) and quiet for
        ``rollups.idle_after_s`` stops holding the others back; one not read from yet
        while it has records holds the watermark where it is.
        """
        key = (message.topic(), str(message.partition()))
        now = time.monotonic()
        newest, _ = self._partition_max.get(key, (event_us, now))
        self._partition_max[key] = (max(newest, event_us), now)
        if self._unread_empty:
            return self._low_watermark
        idle = self.settings.rollups.idle_after_s
        marks = [
            m
            for k, (m, seen) in self._partition_max.items()
            if k in self._unread or now - seen <= idle
        ]
        mark = min(marks) if marks else max(m for m, _ in self._partition_max.values())
        if self._low_watermark is None or mark > self._low_watermark:
            self._low_watermark = mark
        return self._low_watermark

    def _refresh_unread(self) -> None:
        """Which assigned partitions still have records to read (per batch: cheap enough)."""
        try:
            lags = consumer_lag(self._consumer)
        except KafkaException:
            self._caught_up = False
            return
        self.metrics.record_lag(self._group, lags)
        # not fetched yet (lag unknown): it may hold records
        unread = {(t, str(p)) for (t, p), lag in lags.items() if lag is None or lag > 0}
        self._unread = unread
        self._unread_empty = any(k not in self._partition_max for k in unread)
        self._caught_up = bool(lags) and not unread

    def _route(self, stream: str, record: Record, message: Any, headers: Any) -> None:
        wall = now_us()
        low = self._low_mark(message, to_us(record.event_time))  # type: ignore[attr-defined]
        if low is not None and isinstance(record, StateTransition | ToolCall):
            self._tracker.observe(low, wall)
            # timeouts fire where the event clock passes a deadline: the same place in the
            # input whatever the batching, so a restarted worker repeats them exactly
            due = self._tracker.index.next_deadline()
            if due is not None and due < self._tracker.now(wall) - self._grace_us:
                self._timers(wall)
        if isinstance(record, StateTransition):
            self._transition(record, message, headers)
        elif isinstance(record, ToolCall):
            run = self._runs.get(record.run_id)
            if run is not None:
                moved = observe_tool_call(
                    run, record.tool, to_us(record.event_time), self.settings.lifecycle
                )
                if moved is not None and moved is not run:
                    self._runs[record.run_id] = moved
                    self._tracker.track(moved)
            self._rollups.add(record)
        elif isinstance(record, ModelCall | ReviewDecision):
            self._rollups.add(record)
        # windows close where the low watermark passes them: a fixed place in the input
        if low is None:
            return
        mark = low - self._lateness_us
        if mark - mark % 1_000_000 > self._closed_through:
            self._closed_through = mark - mark % 1_000_000
            self._emit_rollups(self._rollups.advance(mark))

    def _transition(self, tr: StateTransition, message: Any, headers: Any) -> None:
        outcome = apply(self._runs.get(tr.run_id), tr, self.settings.lifecycle)
        if isinstance(outcome, Duplicate):
            self.stats.duplicates += 1
            return
        if isinstance(outcome, Accepted):
            self._accept(outcome, headers)
            return
        if outcome.timeout is not None:
            self._accept(outcome.timeout, headers)
            self.stats.timeouts += 1
        if outcome.state is not None:
            self._runs[tr.run_id] = outcome.state
            self._tracker.track(outcome.state)
        self.stats.rejected += 1
        self._dead_letter(message, outcome.reason, "InvalidTransition", record=tr)

    def _accept(self, accepted: Accepted, headers: Any) -> None:
        self._runs[accepted.state["run_id"]] = accepted.state
        self._tracker.track(accepted.state)
        self._send("lifecycle", accepted.state["run_id"], accepted.transition, headers)
        self._rollups.add(accepted.transition)
        self.stats.accepted += 1

    def _dead_letter(
        self, message: Any, reason: str, error_type: str, record: StateTransition | None = None
    ) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        invalid = InvalidEvent(
            invalid_id=str(uuid.uuid5(_INVALID_NS, f"{topic}/{partition}/{offset}")),
            detected_time=record.event_time if record is not None else _now(),
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=message.key(),
            raw=message.value() or b"",
            reason=reason[:4000] or "invalid",
            error_type=error_type,
            run_id=record.run_id if record is not None else None,
            tenant_id=record.tenant_id if record is not None else None,
            event_id=record.event_id if record is not None else None,
        )
        out = self._out["invalid"]
        self._producer.produce(out, encode_model(invalid), message.key(), headers=message.headers())
        self.stats.invalid += 1
        self._tally_out[out] = self._tally_out.get(out, 0) + 1
        cause = (topic, error_type)
        self._tally_invalid[cause] = self._tally_invalid.get(cause, 0) + 1

    def _timers(self, wall_us: int | None = None) -> None:
        if wall_us is None:
            # the wall clock may stand in for event time only once the backlog is read:
            # a slow rejoin or first fetch after a restart must not fail past-dated runs
            wall_us = now_us() if self._caught_up else 0
        sweep = self._tracker.sweep(self._runs.get, wall_us)
        for timeout in sweep.timeouts:
            self._accept(timeout, None)
            self.stats.timeouts += 1
        for run_id in sweep.expired:
            self._runs.pop(run_id, None)
            self._tracker.forget(run_id)

    def _close_windows(self) -> None:
        """While the input is idle the wall clock closes windows."""
        quiet = time.monotonic() - self._last_input > self.settings.rollups.idle_after_s
        if quiet and self._caught_up:
            self._emit_rollups(self._rollups.advance(now_us() - self._lateness_us))

    def _emit_rollups(self, rollups: list[Rollup]) -> None:
        for rollup in rollups:
            self._send("rollups", rollup.scope_key, rollup)
            self.stats.rollups += 1
            for alert in self._evaluator.process(rollup):
                self._send("alerts", f"{alert.rule_id}|{alert.scope_key}", alert)
                self.stats.alerts += 1

    def _write_state(self) -> None:
        produce = self._producer.produce
        topic, encode = self._state_topic, self._changelog.encode
        for key, value in self._runs.drain().items():
            produce(topic, encode(value), f"run:{key}".encode())
        for key, value in self._alert_state.drain().items():
            produce(topic, encode(value), f"alert:{key}".encode())
        for key, cell in self._rollups.drain_changes().items():
            produce(topic, encode(cell), f"cell:{key}".encode())
        tracker = {
            "clock": self._tracker.to_json()["clock"],
            "partitions": {f"{t}|{p}": m for (t, p), (m, _) in self._partition_max.items()},
        }
        produce(topic, encode(tracker), b"tracker")


def _now() -> Any:
    from agentstream.schemas import utc_now

    return utc_now()
