"""The processor loop: consume → gate → lifecycle / rollups / alerts → produce, transactionally.

One Kafka transaction per batch holds the outputs (lifecycle, dead letters,
rollups, alerts), the state changes (changelog topic) and the consumer offsets:
a worker killed at any point restarts from the last committed batch with the
state of that batch, so outputs are exactly once for read_committed consumers
(the sink, the dispatcher, the demo view).

Start-up fences first: ``init_transactions`` with the worker's transactional id
(``<app>-processors-<instance_id>``) aborts whatever an older incarnation left open
and fences it; then the layout is checked (and an old changelog migrated,
:mod:`processors.engine._assignment`), then the consumer joins the group as a static
member (``group.instance.id``).

Partitions are the unit of scale: on each assignment the worker reads only the changelog
partitions it was given (to their end, or it stops with an error) before it processes
them, and forgets the state of partitions it no longer has. Every transaction passes the
consumer's group metadata with its offsets (KIP-447): a worker the group has moved on
from (a zombie) cannot commit. A revocation finds no transaction open (rebalance
callbacks run inside ``consume``, between transactions): the last batch is committed.
Any exception inside a batch aborts its transaction and is raised again; the engine
is then spent (its memory holds part of an aborted batch): close it and start anew.

Clocks: see :mod:`processors.engine._watermarks`. Timeouts fire where the event clock
of the run's partition index passes a deadline; the wall clock stands in only for a
partition index read to its end, continuously, for ``lifecycle.idle_after_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from opentelemetry import trace

from agentstream.core import kafka
from agentstream.core.catalog import STREAMS
from agentstream.core.clock_sanity import ERROR_TYPE, check_event_time_us
from agentstream.core.codec import codec_from_settings
from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError, CodecError, ContractError
from agentstream.core.metrics import PipelineMetrics, pipeline_metrics
from agentstream.core.tracing import consumer_span, trace_headers
from agentstream.processors._clock import now_us, seconds_to_us, to_us
from agentstream.processors.alerts import AlertEvaluator, rules_from_settings
from agentstream.processors.engine._assignment import prepare_changelog
from agentstream.processors.engine._rebalance import Rebalancing
from agentstream.processors.engine._restore import invalid_event
from agentstream.processors.engine._stages import TwoStageRollups, ensure_partials
from agentstream.processors.engine._state import (
    TrackedDict,
)
from agentstream.processors.engine._tallies import EngineStats, Tallies
from agentstream.processors.engine._watermarks import PartitionClocks, partition_lags
from agentstream.processors.lifecycle import (
    TERMINAL_STATES,
    Accepted,
    Duplicate,
    RunState,
    TimeoutTracker,
    apply,
    observe_tool_call,
)
from agentstream.processors.review import ReviewSampler
from agentstream.schemas import (
    ModelCall,
    Record,
    ReviewDecision,
    StateTransition,
    ToolCall,
    encode_model,
)

__all__ = ["EngineStats", "ProcessorEngine"]

log = logging.getLogger("agentstream.processors")
_TRACER = trace.get_tracer("agentstream.processors")
#: the agent streams the processors read, and their models
_INPUTS: dict[str, type[Record]] = {s.name: s.model for s in STREAMS if s.writer == "agent"}


class ProcessorEngine(TwoStageRollups, Rebalancing):
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
        self._tallies = Tallies()
        topics = settings.topics
        self._topic_stream = {topics.name(stream): stream for stream in _INPUTS}
        self._out = {
            s: topics.name(s)
            for s in ("lifecycle", "invalid", "rollups", "alerts", "review_requests")
        }
        self._review = ReviewSampler(settings.review)
        worker = settings.worker
        self._state_topic = f"{topics.prefix}{worker.app_id}-state"
        self._batch_size = batch_size
        self._group = worker.processors_group
        self._consumer = kafka.consumer(
            settings,
            "processors",
            {"group.id": self._group, "group.instance.id": worker.instance_id},
        )
        self._producer = kafka.producer(
            settings, "processors", {"transactional.id": worker.transactional_id}
        )
        self._runs = TrackedDict()
        self._alert_state = TrackedDict()
        #: per partition index, the timers of its runs (None: runs restored from a release
        #: that did not record their partition, until their next event)
        self._trackers: dict[int | None, TimeoutTracker] = {}
        self._evaluator = AlertEvaluator(rules_from_settings(settings), self._alert_state)
        self._clocks = PartitionClocks()
        self._grace_us = seconds_to_us(settings.lifecycle.timeout_grace_s)
        self._positions: dict[tuple[str, int], int] = {}
        #: per assigned partition, the committed offset it started from
        self._started: dict[tuple[str, int], int] = {}
        self._next_timer = 0.0
        self._restored = False
        #: partition indexes whose state this worker holds / may process now (between a
        #: revocation and the next assignment: none)
        self._held: set[int] = set()
        self._active: set[int] = set()
        #: last consumed position per input partition since the assignment (the offsets of
        #: every transaction, so a zombie's transaction is always refused)
        self._at: dict[tuple[str, int], int] = {}
        #: per partition whose state this worker holds, the offset after the last record
        #: processed: a record below it is in the state already (a client that restarts a
        #: fetch inside one ``consume``, across a revocation and a reassignment of the same
        #: partition, delivers it a second time)
        self._next: dict[tuple[str, int], int] = {}
        #: the changelog partition of runs deleted in this batch
        self._gone: dict[str, int | None] = {}
        self._partitions = 0
        self._drop_legacy = False
        self._failed: BaseException | None = None
        self._partials = ""
        self._init_stages()
        #: when the loop last came round (monotonic): the worker's watchdog reads it
        self.beat = time.monotonic()

    @property
    def inputs(self) -> list[str]:
        """The topics the processors consume."""
        return list(self._topic_stream)

    @property
    def ready(self) -> bool:
        """Restored, and partitions assigned."""
        return self._restored and bool(self._clocks.assigned)

    def health(self) -> dict[str, Any]:
        """``assigned`` (partition indexes), ``restored``, ``caught_up``, ``lag``, ``failed``,
        ``open_runs`` (runs not finished yet), ``settled`` (:attr:`settled`)."""
        return {
            "settled": self.settled,
            "open_runs": sum(r["state"] not in TERMINAL_STATES for r in self._runs.values()),
            "assigned": sorted(self._clocks.assigned),
            "restored": self._restored,
            "caught_up": self._clocks.caught_up(),
            "lag": self._clocks.lag,
            "failed": None if self._failed is None else repr(self._failed),
        }

    # -- start-up ------------------------------------------------------------

    def open(self, ensure_topic: Callable[[str, int], None] | None = None) -> None:
        """Fence older instances, check (create, migrate) the changelog, subscribe; the
        state is restored per assignment (``ensure_topic(topic, partitions)``: create the
        changelog)."""
        try:
            self._producer.init_transactions(30)
        except KafkaException as exc:
            raise AgentstreamError(f"processors: cannot start transactions: {exc}") from exc
        self._partitions = prepare_changelog(
            self.settings, self._producer, self.inputs, self._state_topic, ensure_topic
        )
        self._partials = ensure_partials(self.settings, self._partitions)
        self._consumer.subscribe(
            [*self._topic_stream, self._partials],
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )

    def close(self) -> None:
        self.metrics.forget_group(self._group)
        self._consumer.close()
        try:
            self._producer.flush(10)
        except KafkaException as exc:  # fenced by a successor: nothing of ours to deliver
            log.warning("processors: closing: %s", exc)

    # -- the loop --------------------------------------------------------------

    def run(self, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Poll until ``stop`` is set; ``on_ready`` once partitions are assigned."""
        ready = False
        while not stop.is_set():
            self.beat = time.monotonic()
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
        if self._failed is not None:
            raise AgentstreamError(
                f"processors: a batch failed ({self._failed!r}); start a new engine"
            )
        if not self._active:
            # rebalancing: nothing may be decided, nothing committed; a fatal error stops
            for message in messages:
                if message.error() and message.error().fatal():
                    raise AgentstreamError(f"processors: consumer failed: {message.error().str()}")
            return
        active = self._active
        if any(m.partition() not in active for m in messages):
            # revoked in this very consume: another worker has them now (errors stay)
            messages = [m for m in messages if m.error() or m.partition() in active]
        now = time.monotonic()
        timer_due = now >= self._next_timer
        if not messages and not timer_due:
            return
        self._refresh_lags(now, messages)
        self._partials_sent = False
        try:
            self._producer.begin_transaction()
            self._advance_partitions()
            for message in messages:
                self._handle(message)
            if timer_due:
                self._next_timer = now + self.settings.lifecycle.timer_interval_s
                self._timers(now)
            self._close_windows(now)
            self._write_state()
            self._at.update(self._positions)
            # every assigned partition's offset (its committed one until read from), in
            # every transaction, timer-only ones too: the group refuses the whole transaction
            # of a worker it has moved on from (a zombie's timers would otherwise write
            # partials, rollups and state of partitions another worker owns). librdkafka's
            # send_offsets_to_transaction can block past its timeout while the group
            # coordinator is away (librdkafka #5456, #5511): the worker's watchdog ends it
            at = {k: o for k, o in self._started.items() if o >= 0} | self._at
            offsets = [TopicPartition(t, p, o) for (t, p), o in at.items()]
            if offsets:
                self._producer.send_offsets_to_transaction(
                    offsets, self._consumer.consumer_group_metadata(), 30
                )
            self._producer.commit_transaction(60)
        except BaseException as exc:
            self._failed = exc
            self._tallies.clear()
            try:
                self._producer.abort_transaction(30)
            except KafkaException as abort:
                log.warning("processors: abort after a failed batch failed too: %s", abort)
            if isinstance(exc, KafkaException):
                raise AgentstreamError(f"processors: transaction failed: {exc}") from exc
            raise
        self._positions.clear()
        self._drop_legacy = False
        self._settled = self._partials_lag == 0 and not self._partials_sent
        self.stats.batches += 1
        self._tallies.publish(self.metrics)

    def _refresh_lags(self, now: float, messages: list[Any]) -> None:
        """Which assigned partitions still have records to read (per batch: cheap enough)."""
        try:
            lags = partition_lags(self._consumer, self._started)
        except KafkaException:
            self._clocks.refresh(None, now)
            self._partials_lag = None
            return
        self.metrics.record_lag(self._group, lags)
        partials = self._partials
        inputs = {k: v for k, v in lags.items() if k[0] != partials}
        merge = [v for k, v in lags.items() if k[0] == partials]
        self._partials_lag = None if not merge or None in merge else sum(v or 0 for v in merge)
        self._clocks.refresh(inputs, now, [m for m in messages if m.topic() != partials])

    def _send(self, stream: str, key: str, record: Record, headers: Any = None) -> None:
        topic = self._out[stream]
        self._producer.produce(topic, encode_model(record), key.encode(), headers=headers)
        self._tallies.count_out(topic)
        if stream == "lifecycle" and (request := self._review.request(record)) is not None:
            self._send("review_requests", key, request)

    def _handle(self, message: Any) -> None:
        if message.error():
            if message.error().fatal():
                raise AgentstreamError(f"processors: consumer failed: {message.error().str()}")
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        key = (topic, partition)
        if offset < self._next.get(key, 0):
            self.stats.redelivered += 1
            log.warning(
                "processors: %s/%d@%d was delivered again (processed already): skipped",
                topic,
                partition,
                offset,
            )
            return
        self._next[key] = self._positions[key] = offset + 1
        if topic == self._partials:
            self._handle_partial(message)
            return
        self._clocks.consumed(topic, partition)
        self.stats.consumed += 1
        self._tallies.count_in(topic)
        stream = self._topic_stream[topic]
        value = message.value()
        try:
            if value is None:
                raise CodecError("empty record (tombstone)")
            record = self._codec.decode_model(value, _INPUTS[stream])
        except (CodecError, ContractError) as exc:
            self._dead_letter(message, str(exc), type(exc).__name__)
            return
        event_us = to_us(record.event_time)  # type: ignore[attr-defined]
        problem = check_event_time_us(event_us, now_us(), self.settings)
        if problem is not None:
            # never observed: it moves no clock and no watermark
            self.stats.out_of_range += 1
            self._dead_letter(message, problem, ERROR_TYPE, record, detected_now=True)
            return
        before = self._clocks.observe(topic, partition, event_us, time.monotonic())
        headers = message.headers()
        if headers:
            with consumer_span(f"process {stream}", headers, tracer=_TRACER):
                self._route(record, message, before, trace_headers(), event_us)
        else:
            self._route(record, message, before, None, event_us)

    def _route(
        self, record: Record, message: Any, before: int, headers: Any, event_us: int
    ) -> None:
        """``event_us``: the record's event time in µs (read once per record)."""
        p = message.partition()
        clock = self._clocks.index.get(p)
        if clock is not None:
            # timeouts fire where the partition's event clock passes a deadline: the same
            # place in the input whatever the batching, so a restarted worker repeats them
            self._sweep(p, clock, due_only=True)
        if isinstance(record, StateTransition):
            self._transition(record, message, before, headers, event_us)
        elif isinstance(record, ToolCall):
            run = self._runs.get(record.run_id)
            if run is not None:
                moved = observe_tool_call(run, record.tool, event_us, self.settings.lifecycle)
                if moved is not None and moved is not run:
                    self._store_run(moved, p)
            self._add_rollup(record, message, before, p, event_us)
        elif isinstance(record, ModelCall | ReviewDecision):
            self._add_rollup(record, message, before, p, event_us)
        self._advance_partition(p)

    def _store_run(self, state: RunState, p: int | None) -> None:
        """Store a run state read at partition index ``p`` (its clock now: ``read_at``)."""
        if p is not None:
            clock = self._clocks.index.get(p)
            state = {**state, "p": p} if clock is None else {**state, "p": p, "read_at": clock}
        run_id = state["run_id"]
        old = self._runs.get(run_id)
        if old is not None and old.get("p") != p:
            self._tracker(old.get("p")).forget(run_id)  # restored without its partition
        self._runs[run_id] = state
        self._tracker(p).track(state)

    def _tracker(self, p: int | None) -> TimeoutTracker:
        tracker = self._trackers.get(p)
        if tracker is None:
            tracker = self._trackers[p] = TimeoutTracker(self.settings.lifecycle)
        return tracker

    def _transition(
        self, tr: StateTransition, message: Any, before: int, headers: Any, event_us: int
    ) -> None:
        p = message.partition()
        outcome = apply(self._runs.get(tr.run_id), tr, self.settings.lifecycle, event_us)
        if isinstance(outcome, Duplicate):
            self.stats.duplicates += 1
            return
        if isinstance(outcome, Accepted):
            # the published transition is the input's, with its dwell: the same event time
            self._accept(outcome, headers, p, message, before, event_us)
            return
        if outcome.timeout is not None:
            self._accept(outcome.timeout, headers, p, None, self._clocks.index.get(p, before))
            self.stats.timeouts += 1
        if outcome.state is not None:
            self._store_run(outcome.state, p)
        self.stats.rejected += 1
        self._dead_letter(message, outcome.reason, "InvalidTransition", record=tr)

    def _accept(
        self,
        accepted: Accepted,
        headers: Any,
        p: int | None,
        message: Any,
        clock: int,
        event_us: int | None = None,
    ) -> None:
        self._store_run(accepted.state, p)
        self._send("lifecycle", accepted.state["run_id"], accepted.transition, headers)
        self._add_rollup(accepted.transition, message, clock, p, event_us)
        self.stats.accepted += 1

    def _dead_letter(
        self,
        message: Any,
        reason: str,
        error_type: str,
        record: Record | None = None,
        *,
        detected_now: bool = False,
    ) -> None:
        topic = message.topic()
        invalid = invalid_event(message, reason, error_type, record, detected_now=detected_now)
        out = self._out["invalid"]
        self._producer.produce(out, encode_model(invalid), message.key(), headers=message.headers())
        self.stats.invalid += 1
        self._tallies.count_out(out)
        self._tallies.count_invalid(topic, error_type)

    def _sweep(self, p: int | None, clock: int, *, due_only: bool = False) -> None:
        tracker = self._trackers.get(p)
        if tracker is None:
            return
        if due_only:
            due = tracker.index.next_deadline()
            if due is None or due >= clock - self._grace_us:
                return
        sweep = tracker.sweep_at(self._runs.get, clock)
        for timeout in sweep.timeouts:
            log.debug(
                "processors: run %s timed out in %s (partition %s, clock %d, %s)",
                timeout.state["run_id"],
                timeout.transition.from_state,
                p,
                clock,
                "at a record" if due_only else "by the timer",
            )
            self._runs[timeout.state["run_id"]] = timeout.state
            self._send("lifecycle", timeout.state["run_id"], timeout.transition)
            self._add_rollup(timeout.transition, None, clock, p)
            self.stats.accepted += 1
            self.stats.timeouts += 1
        for run_id in sweep.expired:
            self._runs.pop(run_id, None)
            self._gone[run_id] = p
            tracker.forget(run_id)

    def _timers(self, now: float) -> None:
        """The timer tick: each partition index at its event clock, or at the wall clock
        where it may stand in (read to the end for ``idle_after_s``, see ``_watermarks``)."""
        clocks, idle = self._clocks, self.settings.lifecycle.idle_after_s
        wall = now_us()
        for p in list(self._trackers):
            if p is not None and p not in self._active:
                continue
            if p is None:
                clock = clocks.low
                wall_ok = bool(clocks.assigned) and all(
                    clocks.wall_ok(q, now, idle) for q in clocks.assigned
                )
            else:
                clock = clocks.index.get(p)
                wall_ok = p in clocks.assigned and clocks.wall_ok(p, now, idle)
            if wall_ok:
                clock = wall if clock is None else max(clock, wall)
            if clock is not None:
                self._sweep(p, clock)
