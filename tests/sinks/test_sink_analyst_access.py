"""Analyst access end to end: the CLI, and queries through a worker's web port."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agentstream.cli import main
from agentstream.core.config import ClickHouseSettings, get_settings, load_settings
from agentstream.core.errors import QueryRefused
from agentstream.schemas import ToolCall
from agentstream.sinks.analyst import (
    HttpAnalyst,
    Identity,
    LocalAnalyst,
    connect,
    handle_analyst_request,
)
from agentstream.sinks.clickhouse import ClickHouseBackend, ClickHouseSink, migrate, open_backend

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


def _calls(n: int) -> list[ToolCall]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    return [
        ToolCall(
            tenant_id="acme",
            user_id="u",
            agent_id="a",
            agent_version="1",
            run_id=f"r{i}",
            event_time=now + dt.timedelta(seconds=i),
            tool=f"tool-{i % 2}",
            status="SUCCESS" if i % 4 else "ERROR",
            error_class="NONE" if i % 4 else "TIMEOUT",
            latency_ms=float(i),
        )
        for i in range(n)
    ]


def _populate(backend: ClickHouseBackend, n: int = 12) -> None:
    settings = load_settings()
    migrate(backend, settings)
    sink = ClickHouseSink(backend, settings.sink)
    for call in _calls(n):
        sink.add_record(call)
    sink.flush(force=True).raise_for_error()


# -- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli_database(chdb_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    database = f"cli_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AGENTSTREAM_CLICKHOUSE__PATH", str(chdb_path))
    monkeypatch.setenv("AGENTSTREAM_CLICKHOUSE__DATABASE", database)
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    backend.command(f"DROP DATABASE IF EXISTS {database}")
    backend.close()


def test_cli_migrate_query_report_and_refusal(
    cli_database: str, chdb_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    assert "migrations applied: 0001, 0002, 0003" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "migrations applied: none" in capsys.readouterr().out

    backend = open_backend(ClickHouseSettings(path=chdb_path, database=cli_database))
    try:
        _populate(backend)
    finally:
        backend.close()

    assert (
        main(
            [
                "query",
                "SELECT tool, count() AS n FROM tool_calls_dedup GROUP BY tool ORDER BY tool",
                "--format",
                "csv",
                "--as",
                "carol",
            ]
        )
        == 0
    )
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["tool", "n"], ["tool-0", "6"], ["tool-1", "6"]]

    assert main(["report", "top-errors", "--since", "1h", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == [{"tool": "tool-0", "errors": 3, "calls": 6, "error_rate": 0.5}]

    assert main(["query", "DELETE FROM tool_calls WHERE 1", "--as", "carol"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentstream: error: read-only access: DELETE")
    assert err.count("\n") == 1

    assert (
        main(
            ["query", "SELECT who, refused, kind FROM query_audit ORDER BY at", "--format", "json"]
        )
        == 0
    )
    audit = json.loads(capsys.readouterr().out)
    assert [(a["who"], a["refused"], a["kind"]) for a in audit[:3]] == [
        ("carol", False, "query"),
        (audit[1]["who"], False, "report"),
        ("carol", True, "query"),
    ]

    assert main(["report"]) == 0
    listing = capsys.readouterr().out
    assert "latency-version" in listing
    assert "cost-tenant" in listing

    assert main(["report", "qps", "--since", "yesterday-ish"]) == 1
    assert "--since" in capsys.readouterr().err


def test_migrate_print_shows_rendered_ddl(
    cli_database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTSTREAM_RETENTION__BUSINESS_DAYS", "45")
    get_settings.cache_clear()
    assert main(["migrate", "--print"]) == 0
    out = capsys.readouterr().out
    assert "INTERVAL 45 DAY DELETE WHERE retention = 'BUSINESS'" in out
    assert not re.search(r"\{\{\s*\w", out)


# -- through the worker's web port --------------------------------------------------------


@pytest.fixture
def web_port(clickhouse: ClickHouseBackend) -> Iterator[int]:
    """A stand-in for the worker's web server, serving handle_analyst_request."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, payload = handle_analyst_request(
                self.path, dict(self.headers), body, backend=clickhouse, token=TOKEN
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_queries_through_the_worker_are_audited_as_http(
    clickhouse: ClickHouseBackend, web_port: int
) -> None:
    _populate(clickhouse)
    analyst = HttpAnalyst(f"http://127.0.0.1:{web_port}", TOKEN, Identity("dave", "oncall"))
    result = analyst.query("SELECT count() AS n, max(event_time) AS last FROM tool_calls_dedup")
    assert result.rows[0][0] == 12
    assert isinstance(result.rows[0][1], dt.datetime)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    report = analyst.report("top-tools", since=since)
    assert [row["calls"] for row in report.dicts()] == [6, 6]
    with pytest.raises(QueryRefused, match="read-only"):
        analyst.query("DROP TABLE tool_calls")
    with pytest.raises(QueryRefused, match="may not read query_audit"):
        analyst.query("SELECT * FROM query_audit")
    audit = clickhouse.query(
        "SELECT who, role, via, kind, refused FROM query_audit ORDER BY at"
    ).rows
    assert audit == [
        ("dave", "oncall", "http", "query", False),
        ("dave", "oncall", "http", "report", False),
        ("dave", "oncall", "http", "query", True),
        ("dave", "oncall", "http", "query", True),
    ]


def test_a_wrong_token_is_refused_and_nothing_runs(
    clickhouse: ClickHouseBackend, web_port: int
) -> None:
    migrate(clickhouse, load_settings())
    analyst = HttpAnalyst(f"http://127.0.0.1:{web_port}", "wrong", Identity("eve"))
    with pytest.raises(QueryRefused, match="token"):
        analyst.query("SELECT 1")
    assert clickhouse.query("SELECT count() FROM query_audit").scalar() == 0


def test_connect_uses_the_worker_when_a_token_is_set_and_it_answers(
    clickhouse: ClickHouseBackend, web_port: int, chdb_path: Path
) -> None:
    via_worker = load_settings(worker={"web_port": web_port, "query_token": TOKEN})
    analyst = connect(via_worker, Identity("frank"))
    assert isinstance(analyst, HttpAnalyst)
    analyst.close()
    direct = load_settings(
        worker={"web_port": web_port},
        clickhouse={"path": str(chdb_path), "database": clickhouse.database},
    )
    local = connect(direct, Identity("frank"))
    try:
        assert isinstance(local, LocalAnalyst)
        assert local.query("SELECT 1 AS one").rows == [(1,)]
    finally:
        local.close()
