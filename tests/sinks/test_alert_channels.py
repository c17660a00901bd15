"""Alert channels against a real local HTTP receiver: signatures, retries, non-blocking delivery."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from agentstream.core.config import AlertChannelSettings, AlertSettings
from agentstream.core.errors import ConfigError
from agentstream.schemas import Alert, AlertState, Severity
from agentstream.sinks.alerting import (
    Channel,
    LogChannel,
    Notifier,
    Outcome,
    SlackChannel,
    StdoutChannel,
    WebhookChannel,
    build_channels,
    slack_escape,
    slack_payload,
    verify_signature,
)
from agentstream.sinks.alerting.testing import Receiver

SECRET = b"s3cret-key"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def alert(n: int = 0, state: AlertState = AlertState.FIRING) -> Alert:
    return Alert(
        rule_id="agent-error-rate",
        state=state,
        severity=Severity.CRITICAL,
        scope_key=f"agent=planner@{n}",
        metric="error_rate",
        value=0.1,
        threshold=0.05,
        comparator=">",
        resolution="1m",
        window_start=T0,
        window_end=T0 + timedelta(minutes=1),
        fired_at=T0 + timedelta(minutes=1, seconds=5),
        message=f"error_rate is 10% (> 5%) #{n}",
        channels=("hook",),
    )


def fast(**fields: Any) -> AlertSettings:
    """Quick retries so the tests run fast (the behaviour is the same)."""
    base: dict[str, Any] = {
        "delivery_retries": 5,
        "delivery_backoff_s": 0.01,
        "delivery_backoff_max_s": 0.05,
        "delivery_timeout_s": 30.0,
    }
    return AlertSettings(**{**base, **fields})


class Outcomes:
    """Collects ``on_done`` calls; lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, Outcome]] = []
        self._cond = threading.Condition()

    def __call__(self, a: Alert, channel: str, outcome: Outcome) -> None:
        with self._cond:
            self.items.append((a.scope_key, channel, outcome))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 60.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.items) >= count, timeout)

    def wait_for_channel(self, channel: str, count: int, timeout: float = 60.0) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(ch == channel for _, ch, _ in self.items) >= count, timeout
            )

    def of(self, channel: str) -> list[tuple[str, Outcome]]:
        with self._cond:
            return [(scope, o) for scope, ch, o in self.items if ch == channel]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


def test_webhook_body_and_hmac_signature_verify_independently(receiver: Receiver) -> None:
    sent = alert()
    with Notifier({"hook": WebhookChannel("hook", receiver.url, secret=SECRET)}, fast()) as n:
        n.deliver(sent)
        assert n.flush(60)
    [request] = receiver.requests
    headers = {k.lower(): v for k, v in request.headers.items()}
    timestamp = headers["x-agentstream-timestamp"]
    expected = hmac.new(SECRET, timestamp.encode() + b"." + request.body, hashlib.sha256)
    assert headers["x-agentstream-signature"] == "sha256=" + expected.hexdigest()
    assert verify_signature(SECRET, timestamp, request.body, headers["x-agentstream-signature"])
    assert not verify_signature(
        b"other", timestamp, request.body, headers["x-agentstream-signature"]
    )
    assert headers["x-agentstream-alert-id"] == sent.alert_id
    assert headers["content-type"] == "application/json"
    doc = json.loads(request.body)
    assert doc["version"] == 1
    assert Alert.model_validate({k: v for k, v in doc.items() if k != "version"}) == sent


def test_unsigned_webhook_without_secret(receiver: Receiver) -> None:
    with Notifier({"hook": WebhookChannel("hook", receiver.url)}, fast()) as n:
        n.deliver(alert())
        assert n.flush(60)
    headers = {k.lower() for k in receiver.requests[0].headers}
    assert "x-agentstream-signature" not in headers
    assert "x-agentstream-alert-id" in headers


def test_three_500s_then_200_delivers_exactly_once() -> None:
    outcomes = Outcomes()
    sent = alert()
    with Receiver([500, 500, 500]) as rx:
        with Notifier({"hook": WebhookChannel("hook", rx.url, secret=SECRET)}, fast()) as n:
            n.deliver(sent, on_done=outcomes)
            assert outcomes.wait_for(1)
            stats = n.stats()["hook"]
        assert [r.status for r in rx.requests] == [500, 500, 500, 200]
        assert [r.headers["X-Agentstream-Alert-Id"] for r in rx.accepted()] == [sent.alert_id]
        assert len({r.body for r in rx.requests}) == 1  # every retry sends the same alert
    assert outcomes.items == [(sent.scope_key, "hook", "delivered")]
    assert (stats.delivered, stats.failed, stats.retries, stats.dropped) == (1, 0, 3, 0)


def test_deliver_returns_while_the_request_is_still_held() -> None:
    outcomes = Outcomes()
    with Receiver(hold=True) as rx:
        with Notifier({"hook": WebhookChannel("hook", rx.url)}, fast()) as n:
            queued = n.deliver(alert(1), on_done=outcomes)
            # deliver() has returned; the receiver holds the request it is sending
            assert queued == ["hook"]
            assert rx.arrived.wait(60)
            assert rx.requests == []
            assert outcomes.items == []
            n.deliver(alert(2), on_done=outcomes)  # also returns at once, channel still busy
            assert rx.requests == []
            assert outcomes.items == []
            rx.release()
            assert outcomes.wait_for(2)
        assert [json.loads(r.body)["scope_key"] for r in rx.requests] == [
            "agent=planner@1",
            "agent=planner@2",
        ]
    assert [o for _, _, o in outcomes.items] == ["delivered", "delivered"]


def test_dead_channel_drops_oldest_and_never_stalls_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentstream.sinks.alerting")
    outcomes = Outcomes()
    with Receiver(hold=True) as dead, Receiver() as live:
        channels = {
            "dead": WebhookChannel("dead", dead.url),
            "live": WebhookChannel("live", live.url),
        }
        with Notifier(channels, fast(queue_size=2)) as n:
            n.deliver(alert(1), ["dead", "live"], on_done=outcomes)
            assert dead.arrived.wait(60)  # the dead lane is stuck inside alert 1
            for i in range(2, 6):
                n.deliver(alert(i), ["dead", "live"], on_done=outcomes)
                # the live channel delivers each one while the dead one still hangs
                assert outcomes.wait_for_channel("live", i)
            stats = n.stats()
            assert (stats["live"].delivered, stats["dead"].delivered) == (5, 0)
            assert (stats["dead"].dropped, stats["dead"].queued) == (2, 2)
            assert outcomes.of("dead") == [
                ("agent=planner@2", "dropped"),
                ("agent=planner@3", "dropped"),
            ]
            dead.release()
            assert outcomes.wait_for(10)
        got = [json.loads(r.body)["scope_key"] for r in dead.requests]
        assert got == ["agent=planner@1", "agent=planner@4", "agent=planner@5"]
    dropped_logs = [r for r in caplog.records if "dropped the oldest" in r.getMessage()]
    assert len(dropped_logs) == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_channel_fails_after_retries_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="agentstream.sinks.alerting")
    outcomes = Outcomes()
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    with Notifier({"hook": WebhookChannel("hook", url)}, fast(delivery_retries=2)) as n:
        n.deliver(alert(), on_done=outcomes)
        assert outcomes.wait_for(1)
        stats = n.stats()["hook"]
    assert outcomes.items[0][2] == "failed"
    assert (stats.failed, stats.retries, stats.delivered) == (1, 2, 0)
    assert stats.last_error is not None
    assert "ConnectError" in stats.last_error
    [record] = [r for r in caplog.records if "gave up" in r.getMessage()]
    assert "after 3 attempt(s)" in record.getMessage()


def test_client_error_is_not_retried_but_429_is() -> None:
    outcomes = Outcomes()
    with Receiver([400, 429]) as rx:
        with Notifier({"hook": WebhookChannel("hook", rx.url)}, fast()) as n:
            n.deliver(alert(1), on_done=outcomes)
            assert outcomes.wait_for(1)
            n.deliver(alert(2), on_done=outcomes)
            assert outcomes.wait_for(2)
            stats = n.stats()["hook"]
        assert [r.status for r in rx.requests] == [400, 429, 200]
    assert [o for _, _, o in outcomes.items] == ["failed", "delivered"]
    assert (stats.failed, stats.delivered, stats.retries) == (1, 1, 1)


def test_slack_payload(receiver: Receiver) -> None:
    with Notifier({"slack": SlackChannel("slack", receiver.url)}, fast()) as n:
        n.deliver(alert(), ["slack"])
        n.deliver(alert(state=AlertState.RESOLVED), ["slack"])
        assert n.flush(60)
    firing, resolved = (json.loads(r.body) for r in receiver.requests)
    assert "[FIRING] CRITICAL agent-error-rate on agent=planner@0" in firing["text"]
    assert "error_rate is 10% (&gt; 5%)" in firing["text"]  # Slack shows "(> 5%)"
    assert firing["attachments"][0]["color"] != resolved["attachments"][0]["color"]
    assert "[RESOLVED]" in resolved["text"]


def test_slack_text_from_events_makes_no_mention_and_no_link(receiver: Receiver) -> None:
    tool = "<!channel> <https://evil|Re-authenticate>"
    hostile = alert().model_copy(
        update={
            "scope_key": f"tenant=acme/tool={tool}",
            "metric": "error_rate <@U024BE7LH>",
            "message": f"tool {tool} fails & <!here>",
        }
    )
    payload = slack_payload(hostile)
    text = json.dumps(payload)
    for raw in ("<!channel>", "<!here>", "<https://evil", "<@U024BE7LH>"):
        assert raw not in text
    assert payload["parse"] == "none"
    assert "tool=&lt;!channel&gt; &lt;https://evil|Re-authenticate&gt;" in payload["text"]
    assert payload["text"].endswith(
        "tool &lt;!channel&gt; &lt;https://evil|Re-authenticate&gt; fails &amp; &lt;!here&gt;"
    )
    assert payload["attachments"][0]["fields"][0]["value"] == "error_rate &lt;@U024BE7LH&gt;"
    assert slack_escape("a & b <c>") == "a &amp; b &lt;c&gt;"
    with Notifier({"slack": SlackChannel("slack", receiver.url)}, fast()) as n:
        n.deliver(hostile, ["slack"])
        assert n.flush(60)
    [request] = receiver.requests
    assert b"<!channel>" not in request.body
    assert json.loads(request.body) == payload


def test_log_and_stdout_channels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agentstream.alerts")
    stream = io.StringIO()
    channels: dict[str, Channel] = {"log": LogChannel(), "out": StdoutChannel("out", stream)}
    with Notifier(channels, fast()) as n:
        n.deliver(alert(), ["log", "out"])
        n.deliver(alert(state=AlertState.RESOLVED), ["log"])
        assert n.flush(60)
    levels = [(r.levelno, r.getMessage()[:10]) for r in caplog.records]
    assert levels == [(logging.ERROR, "[FIRING] C"), (logging.INFO, "[RESOLVED]")]
    assert json.loads(stream.getvalue())["state"] == "FIRING"


def test_unconfigured_channel_is_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    outcomes = Outcomes()
    with Notifier({"log": LogChannel()}, fast()) as n:
        queued = n.deliver(alert(), ["log", "pager"], on_done=outcomes)
        n.deliver(alert(), ["pager"], on_done=outcomes)
        assert n.flush(60)
        assert n.skipped() == {"pager": 2}
    assert queued == ["log"]
    assert sorted(o for _, _, o in outcomes.items) == ["delivered", "skipped", "skipped"]
    assert sum("'pager' is not configured" in r.getMessage() for r in caplog.records) == 1


def test_build_channels_from_settings() -> None:
    settings = AlertSettings(
        webhook_url="http://127.0.0.1:1/a",
        webhook_secret=SecretStr("k"),
        slack_webhook_url=SecretStr("http://127.0.0.1:1/s"),
        channels={
            "oncall": AlertChannelSettings(kind="webhook", url=SecretStr("http://127.0.0.1:1/o")),
            "audit": AlertChannelSettings(kind="stdout"),
        },
    )
    channels = build_channels(settings)
    try:
        assert set(channels) == {"log", "stdout", "webhook", "slack", "oncall", "audit"}
        assert isinstance(channels["oncall"], WebhookChannel)
        assert isinstance(channels["audit"], StdoutChannel)
        assert set(build_channels(AlertSettings())) == {"log", "stdout"}
    finally:
        for channel in channels.values():
            channel.close()
    with pytest.raises(ConfigError, match="CHANNELS: bad: a slack channel needs a url"):
        build_channels(AlertSettings(channels={"bad": AlertChannelSettings(kind="slack")}))


def test_closed_notifier_refuses_and_close_gives_up_on_a_hung_channel() -> None:
    outcomes = Outcomes()
    with Receiver(hold=True) as rx:
        n = Notifier({"hook": WebhookChannel("hook", rx.url)}, fast(delivery_timeout_s=60.0))
        n.deliver(alert(1), on_done=outcomes)
        assert rx.arrived.wait(60)
        n.deliver(alert(2), on_done=outcomes)
        assert n.close(timeout=0) is False  # alert 1 in flight, alert 2 waiting
        rx.release()
        assert outcomes.wait_for(2)
        with pytest.raises(RuntimeError, match="closed"):
            n.deliver(alert(3))
    assert sorted(o for _, _, o in outcomes.items) == ["delivered", "failed"]
