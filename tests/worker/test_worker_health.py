"""`agentstream worker` as a process: ``/health`` and ``/ready`` tell the truth, and a
component that keeps failing stops the worker with a non-zero exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import clickhouse_connect
import clickhouse_connect.driver.exceptions
import pytest

from agentstream.core.config import settings_env
from agentstream.devtools.localstack import free_ports
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.sinks.analyst import KeyStore
from tests.support.engine import engine_settings

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _worker(kafka_broker: BrokerHandle, tmp_path: Path, **sections: dict[str, Any]) -> Any:
    settings = engine_settings(kafka_broker)
    port = free_ports("127.0.0.1", 1)[0]
    overrides: dict[str, dict[str, Any]] = {
        "kafka": {"bootstrap_servers": kafka_broker.bootstrap, "partitions": 3},
        "topics": {"prefix": settings.topics.prefix},
        "worker": {
            "app_id": settings.worker.app_id,
            "web_port": port,
            "ready_file": tmp_path / "ready",
            "restart_backoff_s": 0.2,
            "max_restarts": 2,
        },
        "sink": {"consumer_group": f"{settings.worker.app_id}-sink"},
        "clickhouse": {"path": tmp_path / "chdb"},
    }
    for section, values in sections.items():
        overrides[section] = {**overrides.get(section, {}), **values}
    log = (tmp_path / "worker.log").open("w")  # a file, not a pipe: a full pipe would block it
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentstream", "worker"],
        env={**os.environ, **settings_env(overrides)},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    proc.log_path = tmp_path / "worker.log"  # type: ignore[attr-defined]
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: Any, timeout: float = 60) -> str:
    """SIGTERM, wait (SIGKILL after ``timeout``); the worker's log."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return str(proc.log_path.read_text())


def _until(condition: Any, timeout: float, proc: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (urllib.error.URLError, ConnectionError):
            value = None  # the web port is not up yet
        if value:
            return value
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"condition not met; worker log: {_stop(proc)[-3000:]}")
        time.sleep(0.1)


def test_a_healthy_worker_is_live_ready_and_serves_analysts(
    kafka_broker: BrokerHandle, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    _, secret = KeyStore(keys).create("ops", "oncall")
    proc, url = _worker(kafka_broker, tmp_path, analyst={"keys_file": keys})
    try:
        _until(lambda: (tmp_path / "ready").exists(), 90, proc)
        _until(lambda: _get(f"{url}/ready")[0] == 200, 60, proc)

        def all_running() -> tuple[int, dict[str, Any]] | None:
            # the sink may still be migrating its tables when the processors are ready
            status, body = _get(f"{url}/health")
            running = all(c["state"] == "running" for c in body["components"].values())
            return (status, body) if running else None

        status, body = _until(all_running, 60, proc)
        assert status == 200
        assert body["status"] == "ok"
        assert set(body["components"]) == {"processors", "sink", "alerts", "rollouts"}
        assert all(c["state"] == "running" for c in body["components"].values())

        # the same port speaks ClickHouse's HTTP interface to analysts with a key
        port = int(url.rsplit(":", 1)[1])
        client = clickhouse_connect.get_client(
            host="127.0.0.1", port=port, username="ops", password=secret
        )
        assert client.query("SELECT count() FROM tool_calls").result_rows == [(0,)]
        with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError):
            client.query("SELECT * FROM system.tables")
        with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError):
            clickhouse_connect.get_client(
                host="127.0.0.1", port=port, username="ops", password="wrong"
            ).query("SELECT 1")
    finally:
        log = _stop(proc)
    assert proc.returncode == 0, log[-3000:]
    assert not (tmp_path / "ready").exists()


def test_a_component_that_keeps_failing_shows_in_health_and_stops_the_worker(
    kafka_broker: BrokerHandle, tmp_path: Path
) -> None:
    # a webhook channel without a url: alert delivery cannot start
    proc, url = _worker(
        kafka_broker, tmp_path, alerts={"channels": {"oncall": {"kind": "webhook"}}}
    )
    try:

        def failing() -> dict[str, Any] | None:
            status, body = _get(f"{url}/health")
            return body if status == 503 else None

        body = _until(failing, 90, proc)
        assert body["status"] == "failing"
        alerts = body["components"]["alerts"]
        assert alerts["state"] in ("restarting", "failed")
        assert "ConfigError" in alerts["error"]
        assert "oncall" in alerts["error"]
        assert body["components"]["processors"]["state"] in ("starting", "running")
        proc.wait(90)
        assert proc.returncode == 1
        assert "alerts keeps failing" in proc.log_path.read_text()
    finally:
        _stop(proc)
