"""`agentstream alerts`: list (ClickHouse, topic), rules, test notifications."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from agentstream.cli import main
from agentstream.core.config import get_settings, load_settings
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.schemas import Alert, AlertState, Severity, encode_model
from agentstream.sinks.alerting.testing import Receiver
from agentstream.sinks.clickhouse import ClickHouseBackend, ClickHouseSink, migrate

SECRET = "cli-secret"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Environment changes the CLI's (cached) settings see."""
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def alert(rule: str, scope: str, state: AlertState, minutes_ago: int) -> Alert:
    fired = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return Alert(
        rule_id=rule,
        state=state,
        severity=Severity.CRITICAL,
        scope_key=scope,
        metric="error_rate",
        value=0.1 if state == AlertState.FIRING else 0.01,
        threshold=0.05,
        comparator=">",
        resolution="1m",
        window_start=fired - timedelta(minutes=1, seconds=5),
        window_end=fired - timedelta(seconds=5),
        fired_at=fired,
        message=f"{rule} {state} on {scope}",
        channels=("log",),
    )


def history() -> list[Alert]:
    """planner fired and resolved, search still firing, an old one outside 24 h."""
    return [
        alert("agent-error-rate", "agent=planner", AlertState.FIRING, 50),
        alert("agent-error-rate", "agent=planner", AlertState.RESOLVED, 45),
        alert("tool-error-rate", "tool=search", AlertState.FIRING, 40),
        alert("tool-error-rate", "tool=lookup", AlertState.FIRING, 60 * 30),
        alert("tool-error-rate", "tool=lookup", AlertState.RESOLVED, 60 * 29),
    ]


def expected_recent() -> list[tuple[str, str]]:
    return [
        ("tool=search", "FIRING"),
        ("agent=planner", "RESOLVED"),
        ("agent=planner", "FIRING"),
    ]


def listed(out: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    doc = json.loads(out)
    firing = [(a["scope_key"], a["state"]) for a in doc["firing"]]
    recent = [(a["scope_key"], a["state"]) for a in doc.get("recent", [])]
    return firing, recent


# -- test notifications and rules (no broker, no database) ---------------------------------


def test_alerts_test_sends_a_signed_notification(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with Receiver() as rx:
        env.setenv("AGENTSTREAM_ALERTS__WEBHOOK_URL", rx.url)
        env.setenv("AGENTSTREAM_ALERTS__WEBHOOK_SECRET", SECRET)
        assert main(["alerts", "test", "agent-error-rate", "--channel", "webhook"]) == 0
        [request] = rx.requests
    out = capsys.readouterr().out
    assert "webhook: delivered" in out
    body = json.loads(request.body)
    assert (body["rule_id"], body["state"], body["severity"]) == (
        "agent-error-rate",
        "FIRING",
        "CRITICAL",
    )
    assert body["message"].startswith("TEST notification of rule agent-error-rate")
    ts = request.headers["X-Agentstream-Timestamp"]
    mac = hmac.new(SECRET.encode(), f"{ts}.".encode() + request.body, hashlib.sha256)
    assert request.headers["X-Agentstream-Signature"] == f"sha256={mac.hexdigest()}"


def test_alerts_test_reports_a_failing_channel(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with Receiver([503, 503]) as rx:
        env.setenv("AGENTSTREAM_ALERTS__WEBHOOK_URL", rx.url)
        env.setenv("AGENTSTREAM_ALERTS__DELIVERY_RETRIES", "1")
        env.setenv("AGENTSTREAM_ALERTS__DELIVERY_BACKOFF_S", "0.01")
        assert main(["alerts", "test", "agent-p95-latency"]) == 1
        assert [r.status for r in rx.requests] == [503, 503]
    out = capsys.readouterr().out
    assert "log: delivered" in out
    assert "webhook: failed (webhook: HTTP 503" in out
    assert "slack: skipped (not configured)" in out


def test_alerts_test_unknown_rule(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alerts", "test", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentstream: error: no rule 'nope'")
    assert "agent-error-rate" in err


def test_malformed_rule_file_is_refused_with_rule_and_field(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - {id: ok, metric: error_rate, threshold: 5%}\n"
        "  - {id: broken, metric: error_rate, threshold: 5%, cooldown: soon}\n"
    )
    env.setenv("AGENTSTREAM_ALERTS__RULES_PATH", str(path))
    assert main(["alerts", "rules"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0  # one line
    assert f"agentstream: error: {path}: rule 'broken': cooldown: must be a duration" in err
    path.write_text("rules:\n  - {id: ok, metric: error_rate, threshold: 5%}\n")
    assert main(["alerts", "rules"]) == 0
    assert "1 rule(s) in" in capsys.readouterr().out


# -- listing from ClickHouse (real chdb) ---------------------------------------------------


@pytest.mark.integration
def test_alerts_lists_firing_and_recent_from_clickhouse(
    env: pytest.MonkeyPatch,
    clickhouse: ClickHouseBackend,
    chdb_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings()
    migrate(clickhouse, settings)
    sink = ClickHouseSink(clickhouse, settings.sink)
    alerts = history()
    for a in alerts + alerts[:2]:  # replayed alerts: the table keeps one of each
        sink.add_record(a)
    sink.flush(force=True).raise_for_error()
    env.setenv("AGENTSTREAM_CLICKHOUSE__PATH", str(chdb_path))
    env.setenv("AGENTSTREAM_CLICKHOUSE__DATABASE", clickhouse.database)

    assert main(["alerts", "--source", "clickhouse", "--format", "json"]) == 0
    firing, recent = listed(capsys.readouterr().out)
    assert firing == [("tool=search", "FIRING")]
    assert recent == expected_recent()

    env.setenv("COLUMNS", "200")
    assert main(["alerts", "--source", "clickhouse", "--since", "7d", "--limit", "4"]) == 0
    out = capsys.readouterr().out
    assert "Firing now (1)" in out
    assert "Recent state changes (4, newest first)" in out
    assert "tool=lookup" in out
    assert "tool-error-rate RESOLVED on tool=lookup" in out  # wide enough for messages


# -- listing from the topic (real broker) --------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_alerts_falls_back_to_the_topic(
    env: pytest.MonkeyPatch, kafka_broker: BrokerHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    kafka_broker.create_topics([f"{prefix}alerts"], 2)
    producer = Producer(kafka_broker.client_config())
    for a in history():
        producer.produce(f"{prefix}alerts", key=a.scope_key.encode(), value=encode_model(a))
    producer.produce(f"{prefix}alerts", value=b"garbage")
    assert producer.flush(30) == 0
    env.setenv("AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    env.setenv("AGENTSTREAM_TOPICS__PREFIX", prefix)

    assert main(["alerts", "--source", "kafka", "--format", "json"]) == 0
    firing, recent = listed(capsys.readouterr().out)
    assert firing == [("tool=search", "FIRING")]
    assert recent == expected_recent()

    # auto: the database is unreachable, so the topic answers (and says so on stderr)
    env.setenv("AGENTSTREAM_CLICKHOUSE__BACKEND", "server")
    env.setenv("AGENTSTREAM_CLICKHOUSE__PORT", str(_closed_port()))
    env.setenv("AGENTSTREAM_CLICKHOUSE__CONNECT_TIMEOUT_S", "2")
    assert main(["alerts", "--firing", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert listed(captured.out) == ([("tool=search", "FIRING")], [])
    assert "reading the alerts topic" in captured.err


@pytest.mark.integration
def test_alerts_dispatch_delivers_until_sigterm(kafka_broker: BrokerHandle) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    kafka_broker.create_topics([f"{prefix}alerts"], 1)
    firing = history()[2]
    producer = Producer(kafka_broker.client_config())
    producer.produce(
        f"{prefix}alerts", value=encode_model(firing.model_copy(update={"channels": ("webhook",)}))
    )
    assert producer.flush(30) == 0
    with Receiver() as rx:
        env = {
            **os.environ,
            "AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "AGENTSTREAM_TOPICS__PREFIX": prefix,
            "AGENTSTREAM_ALERTS__CONSUMER_GROUP": f"g-{uuid.uuid4().hex[:8]}",
            "AGENTSTREAM_ALERTS__WEBHOOK_URL": rx.url,
            "AGENTSTREAM_ALERTS__WEBHOOK_SECRET": SECRET,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentstream", "alerts", "dispatch"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert rx.wait_for(1, timeout=120)
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        [request] = rx.requests
    assert json.loads(request.body)["alert_id"] == firing.alert_id
    assert "consumed 1, dispatched 1" in err
    assert "webhook: delivered 1, failed 0, dropped 0" in err
