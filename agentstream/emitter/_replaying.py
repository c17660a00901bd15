"""The emitter's spool replay and producer recovery (mixed into :class:`Emitter`).

One replay round at a time (:class:`~agentstream.emitter._replay.ReplayJob`), on the
background thread, once the broker answers a probe; a producer that hit a fatal error is
replaced, its queue spooled, and purged a while longer for callers still producing into it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

from confluent_kafka import KafkaException, Producer

from agentstream.emitter._replay import MissingTopics, ReplayJob
from agentstream.emitter._spool import Spool, SpoolRecord

__all__ = ["SpoolReplaying"]

#: segments one replay round takes (each is read into memory whole)
_SEGMENTS_PER_ROUND: Final = 2
#: a producer replaced after a fatal error is purged for this long (late produces)
_RETIRE_S: Final = 10.0


class SpoolReplaying:
    """Mixed into :class:`~agentstream.emitter._emitter.Emitter` (its attributes)."""

    spool: Spool
    _producer: Any
    _conf: dict[str, Any]
    _replay: ReplayJob | None
    _queue_max: int
    _interval: float
    _next_replay: float
    _pending_spool: bool
    _diverting: bool
    _failed: list[Any]
    _overflow: Any
    _fatal: Any
    _missing: MissingTopics
    _probe_timeout: float
    _route_lock: threading.Lock
    _retired: list[tuple[Any, float]]
    _replayed: int

    def _queued(self) -> int:
        raise NotImplementedError  # the emitter's

    def _drain(self) -> None:
        raise NotImplementedError  # the emitter's

    def _on_replay_error(self, error: Any, record: SpoolRecord) -> None:
        raise NotImplementedError  # the emitter's

    def _replay_step(self) -> None:
        job = self._replay
        now = time.monotonic()
        if job is not None:
            # leave half of the local queue to the agent's own events
            budget = self._queue_max // 2 - job.outstanding - self._queued()
            if budget > 0:
                job.pump(self._producer, limit=min(budget, 10_000))
            job.reap()
            if job.done:
                # diverting stays on: events spooled while this job ran (in newer
                # segments) must go out before any new event; the next round, at once
                # when this one was clean, claims them, and only a round that finds the
                # spool empty switches diverting off (_spool_drained)
                self._replay = None
                clean = job.failed == 0 and not self._failed
                self._next_replay = now if clean else now + self._interval
            return
        if now < self._next_replay:
            return
        self._next_replay = now + self._interval
        if not (self._pending_spool or self._diverting or self.spool.has_waiting()):
            return
        topics = self._broker_topics()
        if topics is None:
            return
        if self._missing.still_missing(topics.keys()):
            return  # nothing could go out yet: no replay round to fail again
        segments = self.spool.claim(limit=_SEGMENTS_PER_ROUND)
        if not segments:
            self._pending_spool = False
            self._spool_drained()
            return
        self._pending_spool = False
        self._replay = ReplayJob(self.spool, segments, on_delivered=self._count_replayed)
        self._replay.on_error = self._on_replay_error

    def _spool_drained(self) -> None:
        """Nothing of ours is left to replay: new events may go to the producer again.

        Under the route lock, so no caller diverts an event between this check and
        the switch (it would then wait in the spool behind later events of its run).
        """
        with self._route_lock:
            if not self._failed and not self._overflow and self._fatal is None:
                self._diverting = False

    def _count_replayed(self, n: int) -> None:
        self._replayed += n

    def _broker_topics(self) -> dict[str, Any] | None:
        """The broker's topics, or None when no broker answers."""
        try:
            metadata = self._producer.list_topics(timeout=self._probe_timeout)
        except KafkaException:
            return None
        return dict(metadata.topics) if metadata.brokers else None

    def _recreate_producer(self) -> None:
        """After a fatal error the producer is unusable: spool its queue, start a new one."""
        old = self._producer
        self._fatal = None
        self._producer = Producer(self._conf)
        self._purge(old)
        self._drain()
        # a caller may still produce into the old one for a moment: keep purging it
        self._retired.append((old, time.monotonic() + _RETIRE_S))

    def _purge_retired(self) -> None:
        now = time.monotonic()
        for producer, _ in self._retired:
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.poll(0)
        self._retired = [(p, until) for p, until in self._retired if until > now or len(p)]

    def _purge(self, producer: Any) -> None:
        """Drop the producer's queue: each message comes back as a failed delivery report."""
        job = self._replay
        if self._queued() == 0 and (job is None or job.outstanding == 0):
            return
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and (
            self._queued() > 0 or (job is not None and job.outstanding > 0)
        ):
            producer.poll(0.05)
