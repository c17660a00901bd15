"""`agentstream worker` as a process: Prometheus metrics on its web port, JSON logs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from agentstream import Emitter, run_context
from agentstream.core.config import settings_env
from agentstream.devtools.localstack import free_ports
from agentstream.devtools.localstack.testing import BrokerHandle
from tests.support.engine import engine_settings

pytestmark = pytest.mark.integration


def _metric(page: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for line in page.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_the_worker_serves_metrics_and_logs_json(kafka_broker: BrokerHandle, tmp_path: Any) -> None:
    settings = engine_settings(kafka_broker, emitter={"spool_dir": tmp_path / "spool"})
    port = free_ports("127.0.0.1", 1)[0]
    ready = tmp_path / "ready"
    env = {
        **os.environ,
        **settings_env(
            {
                "kafka": {"bootstrap_servers": kafka_broker.bootstrap, "partitions": 3},
                "topics": {"prefix": settings.topics.prefix},
                "worker": {"app_id": settings.worker.app_id, "web_port": port, "ready_file": ready},
                "sink": {"consumer_group": f"{settings.worker.app_id}-sink"},
                "clickhouse": {"path": tmp_path / "chdb"},
            }
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentstream", "worker", "--no-alerts", "--log-format", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "the worker exited early"
            assert time.monotonic() < deadline, "the worker never became ready"
            time.sleep(0.1)
        emitter = Emitter(settings, replay_on_start=False)
        runs = 7
        for _ in range(runs):
            with run_context(tenant_id="acme", agent_id="planner"):
                emitter.transition("INIT")
                with emitter.tool_call("search"):
                    pass
        assert emitter.flush(30) == 0
        emitter.close()

        url = f"http://127.0.0.1:{port}/metrics"
        tool_calls = settings.topics.name("tool_calls")
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(url, timeout=10) as response:
                content_type = response.headers["Content-Type"]
                page = response.read().decode()
            processed = _metric(
                page, "agentstream_events_consumed_total", stage="processors", topic=tool_calls
            )
            stored = _metric(page, "agentstream_sink_rows_total", table="tool_calls")
            # both groups report lag; each refreshes it on its own schedule
            lag = _metric(page, "agentstream_consumer_lag", topic=tool_calls)
            reporting = any(
                line.startswith("agentstream_consumer_lag{") and f'topic="{tool_calls}"' in line
                for line in page.splitlines()
            )
            if (processed, stored, lag) == (runs, runs, 0) and reporting:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (processed, stored, lag) == (runs, runs, 0)
        assert reporting
        assert content_type.startswith("text/plain")
        assert "agentstream_sink_batch_duration_seconds_bucket" in page
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]

    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines, stderr[-2000:]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    messages = [(line["logger"], line["message"]) for line in lines]
    assert any(
        logger == "agentstream.processors" and message.startswith("processors consuming")
        for logger, message in messages
    )
