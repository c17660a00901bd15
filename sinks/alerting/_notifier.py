"""Asynchronous alert delivery: one bounded queue and one worker thread per channel.

:meth:`Notifier.deliver` only appends to in-memory queues and returns at once;
it never waits for a network. Each channel has its own lane (queue + daemon
thread), so a slow or dead channel delays nobody else.

Per notification the lane makes ``1 + delivery_retries`` attempts at most,
waiting ``delivery_backoff_s * 2**n`` (times a random 0.5-1.0 jitter, at least a
receiver's ``Retry-After``, at most ``delivery_backoff_max_s``) between them; a
non-retryable failure (e.g. HTTP 400) ends it at once.

**Overflow policy: drop-oldest.** A lane holds at most ``queue_size`` waiting
notifications; when a new one arrives at a full lane, the *oldest* waiting one
is dropped, counted in :attr:`ChannelStats.dropped` and logged as a warning:
the newest state of an incident matters most to on-call, and memory stays
bounded while a channel is down.

Every outcome is counted per channel (:meth:`Notifier.stats`), logged
(gave up / dropped at WARNING or ERROR) and added to the OpenTelemetry counter
``agentstream.alerts.notifications`` (attributes ``channel``, ``outcome``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from agentstream.core.config import AlertSettings
from agentstream.core.errors import ChannelError
from agentstream.core.metrics import PipelineMetrics, pipeline_metrics
from agentstream.schemas import Alert
from agentstream.sinks.alerting._channels import Channel

__all__ = ["ChannelStats", "Notifier", "Outcome", "OutcomeCallback"]

log = logging.getLogger("agentstream.sinks.alerting")

#: how one notification to one channel ended
Outcome = Literal["delivered", "failed", "dropped", "skipped"]
#: called once per (alert, channel) with the outcome: on the channel's delivery thread,
#: or inside ``deliver`` itself for ``dropped`` and ``skipped``; must be quick
OutcomeCallback = Callable[[Alert, str, Outcome], None]


@dataclass
class ChannelStats:
    """Counters of one channel since the notifier started."""

    enqueued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    #: waiting now (not counting the one being attempted)
    queued: int = 0
    last_error: str | None = None


@dataclass
class _Job:
    alert: Alert
    on_done: OutcomeCallback | None


@dataclass
class _Lane:
    channel: Channel
    size: int
    queue: deque[_Job] = field(default_factory=deque)
    busy: bool = False
    stats: ChannelStats = field(default_factory=ChannelStats)
    thread: threading.Thread | None = None


def _report(metrics: PipelineMetrics, job: _Job, channel: str, outcome: Outcome) -> None:
    metrics.notifications.add(1, {"channel": channel, "outcome": outcome})
    if job.on_done is None:
        return
    try:
        job.on_done(job.alert, channel, outcome)
    except Exception:
        log.exception("alert outcome callback failed (%s, %s)", channel, outcome)


class Notifier:
    """Deliver alerts to named channels in the background, with retries and backoff."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        settings: AlertSettings,
        *,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or pipeline_metrics()
        self._cond = threading.Condition()
        self._closing = False
        self._abort = threading.Event()
        self._skipped: dict[str, int] = {}
        self._lanes = {name: _Lane(ch, settings.queue_size) for name, ch in channels.items()}
        for name, lane in self._lanes.items():
            lane.thread = threading.Thread(
                target=self._work, args=(name, lane), name=f"alerts-{name}", daemon=True
            )
            lane.thread.start()

    @property
    def channels(self) -> tuple[str, ...]:
        """Names of the configured channels."""
        return tuple(self._lanes)

    def deliver(
        self,
        alert: Alert,
        channels: Iterable[str] | None = None,
        on_done: OutcomeCallback | None = None,
    ) -> list[str]:
        """Queue ``alert`` for ``channels`` (default: ``alert.channels``); returns at once.

        Returns the channel names it was queued for. A name no channel is
        configured for is reported ``skipped`` (once logged, always counted).
        ``on_done`` is called once per channel name with the outcome.
        """
        names = list(dict.fromkeys(alert.channels if channels is None else channels))
        queued: list[str] = []
        dropped: list[tuple[_Job, str]] = []
        skipped: list[str] = []
        job = _Job(alert, on_done)
        with self._cond:
            if self._closing:
                raise RuntimeError("Notifier is closed")
            for name in names:
                lane = self._lanes.get(name)
                if lane is None:
                    skipped.append(name)
                    continue
                if len(lane.queue) >= lane.size:
                    dropped.append((lane.queue.popleft(), name))
                    lane.stats.dropped += 1
                lane.queue.append(job)
                lane.stats.enqueued += 1
                lane.stats.queued = len(lane.queue)
                queued.append(name)
            self._cond.notify_all()
        for old, name in dropped:
            log.warning(
                "alert channel %s is full (%d waiting): dropped the oldest notification "
                "(%s %s on %s)",
                name,
                self._settings.queue_size,
                old.alert.state,
                old.alert.rule_id,
                old.alert.scope_key,
            )
            _report(self._metrics, old, name, "dropped")
        for name in skipped:
            self._skip(job, name)
        return queued

    def _skip(self, job: _Job, name: str) -> None:
        with self._cond:
            first = name not in self._skipped
            self._skipped[name] = self._skipped.get(name, 0) + 1
        if first:
            log.warning("alert channel %r is not configured: its notifications are skipped", name)
        _report(self._metrics, job, name, "skipped")

    def stats(self) -> dict[str, ChannelStats]:
        """A snapshot of every channel's counters."""
        with self._cond:
            return {name: ChannelStats(**vars(lane.stats)) for name, lane in self._lanes.items()}

    def skipped(self) -> dict[str, int]:
        """Notifications skipped per unconfigured channel name."""
        with self._cond:
            return dict(self._skipped)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification has ended; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while any(lane.queue or lane.busy for lane in self._lanes.values()):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Stop taking alerts, let queued ones end within ``timeout``, then give up.

        After ``timeout`` no retry starts: waiting notifications end ``failed``;
        an attempt already on the wire finishes (bounded by ``delivery_timeout_s``)
        on its daemon thread, which then closes its channel. True when everything
        queued had ended within ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        drained = self.flush(timeout)
        self._abort.set()
        for lane in self._lanes.values():
            if lane.thread is not None:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                lane.thread.join(remaining)
        return drained

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- delivery thread ---------------------------------------------------------------

    def _work(self, name: str, lane: _Lane) -> None:
        try:
            self._drain(name, lane)
        finally:
            lane.channel.close()

    def _drain(self, name: str, lane: _Lane) -> None:
        while True:
            with self._cond:
                while not lane.queue and not self._closing:
                    self._cond.wait()
                if not lane.queue:
                    return
                job = lane.queue.popleft()
                lane.stats.queued = len(lane.queue)
                lane.busy = True
            outcome = self._attempt(name, lane, job.alert)
            with self._cond:
                lane.busy = False
                if outcome == "delivered":
                    lane.stats.delivered += 1
                else:
                    lane.stats.failed += 1
                self._cond.notify_all()
            _report(self._metrics, job, name, outcome)

    def _attempt(self, name: str, lane: _Lane, alert: Alert) -> Outcome:
        settings = self._settings
        what = f"{alert.state} {alert.rule_id} on {alert.scope_key} ({alert.alert_id})"
        for attempt in range(settings.delivery_retries + 1):
            if self._abort.is_set():
                log.error("alert channel %s: gave up on %s at shutdown", name, what)
                return "failed"
            try:
                lane.channel.send(alert)
            except ChannelError as exc:
                error, retryable, retry_after = str(exc), exc.retryable, exc.retry_after
            except Exception as exc:  # a channel bug must not kill its lane
                error, retryable, retry_after = f"{type(exc).__name__}: {exc}", True, None
                log.exception("alert channel %s raised unexpectedly", name)
            else:
                if attempt:
                    log.info("alert channel %s: delivered %s after %d retries", name, what, attempt)
                return "delivered"
            with self._cond:
                lane.stats.last_error = error
            if not retryable or attempt == settings.delivery_retries:
                log.error(
                    "alert channel %s: gave up on %s after %d attempt(s): %s",
                    name,
                    what,
                    attempt + 1,
                    error,
                )
                return "failed"
            delay = settings.delivery_backoff_s * 2**attempt * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = max(delay, retry_after)
            delay = min(delay, settings.delivery_backoff_max_s)
            log.debug("alert channel %s: %s; retry in %.2fs", name, error, delay)
            with self._cond:
                lane.stats.retries += 1
            self._metrics.delivery_retries.add(1, {"channel": name})
            self._abort.wait(delay)
        return "failed"  # pragma: no cover - the loop always returns
