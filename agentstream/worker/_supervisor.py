"""Components and the supervisor that keeps them running.

A :class:`Component` is opened, run until a stop event is set, and closed. The
supervisor runs each one in its own thread and releases it exactly once: ``close`` after
``run`` returned, ``abort`` when ``open`` or ``run`` raised (also while stopping). One that
fails (raises, or returns from ``run`` without being asked to stop) is counted, reported
as failing by :meth:`Supervised.health`, and started again (a fresh
instance from its factory) after a backoff that doubles up to a maximum. One that
keeps failing (``worker.max_restarts`` within ``worker.restart_window_s``) is given up:
the worker then stops with a non-zero exit status so that an orchestrator restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from agentstream.core.config import WorkerSettings
from agentstream.core.metrics import PipelineMetrics

__all__ = ["Component", "ComponentHealth", "Progressing", "Supervised"]

log = logging.getLogger("agentstream.worker")

State = Literal["starting", "running", "restarting", "failed", "stopped"]


class Component(Protocol):
    """What the worker runs: opened, run until ``stop`` is set, closed (or aborted)."""

    def open(self) -> None: ...

    def run(self, stop: threading.Event) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Let go after a failure: release clients without committing anything more."""
        ...


@runtime_checkable
class Progressing(Protocol):
    """A component whose loop says when it last came round, for the watchdog."""

    def progress(self) -> float:
        """``time.monotonic()`` at the loop's last turn."""
        ...


@dataclass(frozen=True)
class ComponentHealth:
    """One component's state, for ``/health``."""

    name: str
    state: State
    restarts: int
    #: the last failure (type and message), while restarting or failed
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state in ("starting", "running", "stopped")

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state": self.state, "restarts": self.restarts}
        if self.error is not None:
            data["error"] = self.error
        return data


class Supervised:
    """A component in its own thread, restarted with backoff when it fails."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], Component],
        settings: WorkerSettings,
        metrics: PipelineMetrics,
        on_give_up: Callable[[str], None],
    ) -> None:
        self.name = name
        self._factory = factory
        self._settings = settings
        self._metrics = metrics
        self._on_give_up = on_give_up
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: State = "starting"
        self._error: str | None = None
        self._failures: deque[float] = deque()
        self._restarts = 0
        self.current: Component | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"agentstream-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.0f s", self.name, timeout)
        if self._state != "failed":
            self._state = "stopped"

    def health(self) -> ComponentHealth:
        return ComponentHealth(self.name, self._state, self._restarts, self._error)

    def stuck_for(self, now: float) -> float:
        """How long the running component's loop has not come round (0: not watched)."""
        current: object = self.current
        if self._state != "running" or not isinstance(current, Progressing):
            return 0.0
        return max(0.0, now - current.progress())

    def _loop(self) -> None:
        backoff = self._settings.restart_backoff_s
        while not self._stop.is_set():
            component: Component | None = None
            #: close() was called (whatever it did): the component is never released again
            released = False
            started = time.monotonic()
            try:
                component = self.current = self._factory()
                component.open()
                self._state = "running"
                self._error = None
                component.run(self._stop)
                released = True
                component.close()
                if self._stop.is_set():
                    return
                raise RuntimeError("stopped by itself")  # run() must return only when asked
            except Exception as exc:
                if component is not None and not released:
                    self._abort(component)
                if self._stop.is_set():  # failing while asked to stop is no reason to restart
                    log.warning("%s failed while stopping: %s", self.name, exc)
                    return
                self._error = f"{type(exc).__name__}: {exc}"
                log.exception("%s stopped on an error", self.name)
                self._metrics.component_failures.add(1, {"component": self.name})
            if self._gives_up():
                self._state = "failed"
                self._on_give_up(f"{self.name} keeps failing: {self._error}")
                return
            if time.monotonic() - started > self._settings.restart_backoff_max_s:
                backoff = self._settings.restart_backoff_s  # it ran well for a while
            self._restarts += 1
            self._state = "restarting"
            log.warning("%s restarts in %.1f s", self.name, backoff)
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._settings.restart_backoff_max_s)

    def _abort(self, component: Component) -> None:
        try:
            component.abort()
        except Exception as exc:  # releasing is best effort
            log.warning("%s: abort failed: %s", self.name, exc)

    def _gives_up(self) -> bool:
        now = time.monotonic()
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self._settings.restart_window_s:
            self._failures.popleft()
        return len(self._failures) > self._settings.max_restarts
