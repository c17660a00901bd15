"""The sink worker's counters, its health, and the background thread that runs its loop.

:class:`BackgroundLoop` runs ``open`` / ``step`` until stopped / ``close`` in a thread.
A loop that raises is not retried here: the exception is kept in ``error``,
``healthy()`` turns false and ``health()`` says why, so a supervisor can restart
it with ``stop()`` + ``start()`` (a fresh ``open``: the sink resumes from its
committed offsets).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BackgroundLoop", "SinkHealth", "SinkStats"]


@dataclass
class SinkStats:
    """Counters of one :class:`SinkWorker` (read them from any thread)."""

    consumed: int = 0
    #: rows stored per table
    stored: dict[str, int] = field(default_factory=dict)
    #: undecodable / invalid records on raw topics (the contract gate dead-letters them)
    skipped: int = 0
    dead_lettered: int = 0
    #: bad records on the dead-letter topic itself (logged, not looped back)
    dropped: int = 0
    flushes: int = 0
    write_failures: int = 0
    commits: int = 0
    pauses: int = 0
    #: error events from the Kafka consumer (transient ones are retried by librdkafka)
    consumer_errors: int = 0
    #: loops that ended on an exception (see :attr:`SinkWorker.error`)
    crashes: int = 0

    @property
    def rows(self) -> int:
        """Rows stored, all tables together."""
        return sum(self.stored.values())


@dataclass(frozen=True)
class SinkHealth:
    """What a supervisor needs to know about a :class:`SinkWorker` (see :meth:`health`)."""

    #: the loop runs and has not failed
    ok: bool
    #: ``running``, ``failed`` (the loop ended on :attr:`error`) or ``stopped``
    state: str
    #: why it is not ok (the exception, as text), or None
    reason: str | None
    #: consumption is paused because the sink's buffer is full
    paused: bool
    #: seconds ClickHouse writes have been failing (0 when the last write succeeded)
    storage_failing_s: float


class BackgroundLoop(ABC):
    """``open``, ``step`` until :meth:`stop`, ``close``; in a thread or in the caller's."""

    stats: SinkStats

    def __init__(self, thread_name: str, logger: logging.Logger) -> None:
        self._thread_name = thread_name
        self._log = logger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: the exception that ended the last loop (None while it runs, or after a clean stop)
        self.error: BaseException | None = None

    @abstractmethod
    def open(self) -> None:
        """Connect."""

    @abstractmethod
    def step(self) -> None:
        """One round of the loop."""

    @abstractmethod
    def close(self) -> None:
        """Finish gracefully."""

    @abstractmethod
    def abort(self) -> None:
        """Stop like a crash."""

    @abstractmethod
    def _health_detail(self) -> tuple[bool, float]:
        """(consumption paused, seconds the storage has been failing)."""

    def start(self) -> None:
        """Run the loop in a background thread until :meth:`stop`.

        After a failure (:attr:`error` set, the thread ended), ``start`` runs a fresh
        loop: new consumer and sink, resuming from the committed offsets.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the sink worker is already running")
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(
            target=self._run_thread, name=self._thread_name, daemon=True
        )
        self._thread.start()

    def _run_thread(self) -> None:
        try:
            self.open()
            while not self._stop.is_set():
                self.step()
            self.close()
        except BaseException as exc:
            self._failed(exc)
            try:
                self.abort()
            except Exception as cleanup:  # the failure above is what counts
                self._log.warning("sink worker cleanup after the failure failed: %s", cleanup)

    def _failed(self, exc: BaseException) -> None:
        self.error = exc
        self.stats.crashes += 1
        self._log.exception("sink worker stopped on an error (restart it to resume): %s", exc)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Ask the background loop to finish (flush, commit) and wait for it.

        Also after a failure (the thread has ended already); :attr:`error` is kept.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # still finishing: ``running`` keeps saying so
                self._log.error("the sink worker did not stop within %ss", timeout)
                return
            self._thread = None

    @property
    def running(self) -> bool:
        """True while the background loop's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def healthy(self) -> bool:
        """True while the background loop runs and has not failed."""
        return self.running and self.error is None

    def health(self) -> SinkHealth:
        """The loop's state for a supervisor: running / failed (with the reason) / stopped."""
        paused, failing_s = self._health_detail()
        if self.error is not None:
            state, reason = "failed", f"{type(self.error).__name__}: {self.error}"
        elif self.running:
            state, reason = "running", None
        else:
            state, reason = "stopped", "the sink worker is not running"
        return SinkHealth(state == "running", state, reason, paused, failing_s)

    def run_until(self, predicate: Callable[[SinkStats], bool], timeout: float) -> SinkStats:
        """Drive the loop here until ``predicate(stats)`` holds; raises ``TimeoutError``."""
        self.open()
        deadline = time.monotonic() + timeout
        try:
            while not predicate(self.stats):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"sink worker: condition not met in {timeout}s ({self.stats})"
                    )
                self.step()
        except TimeoutError:
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return self.stats
