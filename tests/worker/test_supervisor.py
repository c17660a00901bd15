"""The supervisor's logic with scripted components: restart with backoff, health while
restarting, giving up after too many failures."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from agentstream.core.config import WorkerSettings
from agentstream.testing import RecordedMetrics
from agentstream.worker import ComponentHealth
from agentstream.worker._supervisor import Supervised
from tests.support.wait import wait_until

FAST = WorkerSettings(
    restart_backoff_s=0.01, restart_backoff_max_s=0.05, max_restarts=3, restart_window_s=60
)


class Scripted:
    """Fails in ``run`` while ``failures`` remain, then runs until stopped."""

    def __init__(self, failures: list[str], log: list[str]) -> None:
        self._failures = failures
        self.log = log

    def open(self) -> None:
        self.log.append("open")

    def run(self, stop: threading.Event) -> None:
        if self._failures:
            raise RuntimeError(self._failures.pop(0))
        self.log.append("running")
        stop.wait()

    def close(self) -> None:
        self.log.append("close")

    def abort(self) -> None:
        self.log.append("abort")


def _wait(condition: Callable[[], bool]) -> None:
    wait_until(condition, "the supervisor's state", timeout_s=10.0, poll_s=0.005)


def test_a_failing_component_is_restarted_and_its_failures_counted() -> None:
    recorded = RecordedMetrics()
    log: list[str] = []
    failures = ["broker away", "broker still away"]
    gave_up: list[str] = []
    supervised = Supervised(
        "sink", lambda: Scripted(failures, log), FAST, recorded.metrics, gave_up.append
    )
    supervised.start()
    try:
        _wait(lambda: "running" in log)
        health = supervised.health()
        assert health == ComponentHealth("sink", "running", 2, None)
        assert log == ["open", "abort", "open", "abort", "open", "running"]
        assert recorded.total("agentstream.worker.component_failures", component="sink") == 2
    finally:
        supervised.stop()
    assert log[-1] == "close"
    assert supervised.health().state == "stopped"
    assert gave_up == []


def test_health_names_the_error_while_restarting() -> None:
    slow = WorkerSettings(restart_backoff_s=30, max_restarts=3)
    supervised = Supervised(
        "alerts", lambda: Scripted(["no channel url"], []), slow, RecordedMetrics().metrics,
        lambda _reason: None,
    )  # fmt: skip
    supervised.start()
    try:
        _wait(lambda: supervised.health().state == "restarting")
        health = supervised.health()
        assert not health.ok
        assert health.error == "RuntimeError: no channel url"
        assert health.as_json() == {
            "state": "restarting",
            "restarts": 1,
            "error": "RuntimeError: no channel url",
        }
    finally:
        supervised.stop()


@pytest.mark.parametrize("max_restarts", [0, 2])
def test_a_component_that_keeps_failing_is_given_up(max_restarts: int) -> None:
    settings = FAST.model_copy(update={"max_restarts": max_restarts})
    gave_up: list[str] = []
    log: list[str] = []
    supervised = Supervised(
        "processors", lambda: Scripted(["boom"] * 100, log), settings,
        RecordedMetrics().metrics, gave_up.append,
    )  # fmt: skip
    supervised.start()
    _wait(lambda: bool(gave_up))
    supervised.stop()
    assert gave_up == ["processors keeps failing: RuntimeError: boom"]
    assert log.count("open") == max_restarts + 1
    assert supervised.health().state == "failed"


class Quitter(Scripted):
    """Returns from ``run`` by itself while ``early`` remain, then runs until stopped; or,
    with ``fail_on_stop``, raises once asked to stop."""

    def __init__(self, early: list[str], log: list[str], *, fail_on_stop: bool = False) -> None:
        super().__init__([], log)
        self._early = early
        self._fail_on_stop = fail_on_stop

    def run(self, stop: threading.Event) -> None:
        if self._early:
            self._early.pop()
            return
        self.log.append("running")
        stop.wait()
        if self._fail_on_stop:
            raise RuntimeError("consumer closed under us")


def test_a_component_that_returns_by_itself_is_closed_once_and_restarted() -> None:
    log: list[str] = []
    early = ["quit"]  # shared by the instances: only the first one quits
    recorded = RecordedMetrics()
    supervised = Supervised(
        "processors", lambda: Quitter(early, log), FAST, recorded.metrics, lambda _r: None
    )
    supervised.start()
    try:
        _wait(lambda: "running" in log)
        # the first instance: opened, closed once (never aborted after its close); a fresh one
        assert log == ["open", "close", "open", "running"]
        assert supervised.health().restarts == 1
        assert recorded.total("agentstream.worker.component_failures", component="processors") == 1
    finally:
        supervised.stop()
    assert log == ["open", "close", "open", "running", "close"]


def test_a_component_failing_while_stopping_is_aborted_once() -> None:
    log: list[str] = []
    supervised = Supervised(
        "sink", lambda: Quitter([], log, fail_on_stop=True), FAST, RecordedMetrics().metrics,
        lambda _r: None,
    )  # fmt: skip
    supervised.start()
    _wait(lambda: "running" in log)
    supervised.stop()
    assert log == ["open", "running", "abort"]
    assert supervised.health().state == "stopped"
