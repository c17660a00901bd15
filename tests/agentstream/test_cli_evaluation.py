"""`agentstream compare`, `eval report` and `report business` end to end on the embedded
folder: JSON output checked against figures computed by hand here."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentstream.cli import main
from agentstream.core.config import ClickHouseSettings, get_settings, load_settings
from agentstream.devtools.localstack._system import free_ports
from agentstream.schemas import EvalResult, Record, StateTransition
from agentstream.sinks import Position
from agentstream.sinks.clickhouse import ClickHouseSink, migrate, open_backend

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    "argv", [["compare", "--help"], ["eval", "--help"], ["eval", "report", "--help"]]
)
def test_every_new_command_answers_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: agentstream" in capsys.readouterr().out


@pytest.fixture
def folder(chdb_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    database = f"clieval_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AGENTSTREAM_CLICKHOUSE__PATH", str(chdb_path))
    monkeypatch.setenv("AGENTSTREAM_CLICKHOUSE__DATABASE", database)
    monkeypatch.setenv("AGENTSTREAM_WORKER__WEB_PORT", str(free_ports("127.0.0.1", 1)[0]))
    monkeypatch.setenv("COLUMNS", "200")  # the table on one line per row
    get_settings.cache_clear()
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    try:
        settings = load_settings()
        migrate(backend, settings)
        records: list[Record] = []
        ctx = {"tenant_id": "acme", "user_id": "u", "agent_id": "planner"}
        # completion: version 1.0 completes 6 of 10 runs, 2.0 completes 9 of 10
        for version, done in (("1.0", 6), ("2.0", 9)):
            for n in range(10):
                records.append(
                    StateTransition(
                        **ctx,
                        agent_version=version,
                        run_id=f"{version}-{n}",
                        event_time=NOW - dt.timedelta(minutes=n + 1),
                        from_state="REVIEWING",
                        to_state="COMPLETED" if n < done else "FAILED",
                    )
                )
                records.append(
                    EvalResult(
                        **ctx,
                        agent_version=version,
                        run_id=f"bench-{version}-{n}",
                        event_time=NOW - dt.timedelta(minutes=n + 1),
                        suite="smoke",
                        task_id=f"t-{n}",
                        correct=n < done,
                        latency_ms=100.0 * (n + 1),
                        cost_usd=0.01,
                    )
                )
        sink = ClickHouseSink(backend, settings.sink)
        for n, record in enumerate(records):
            sink.add_record(record, Position("t", 0, n))
        sink.flush(force=True).raise_for_error()
    finally:
        backend.close()
    yield database
    get_settings.cache_clear()
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    backend.command(f"DROP DATABASE IF EXISTS {database}")
    backend.close()


@pytest.mark.integration
@pytest.mark.usefixtures("folder")
def test_compare_eval_report_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", "--by", "agent_version", "--a", "1.0", "--b", "2.0"]
    assert (
        main([*argv, "--metric", "completion_rate", "--since", "1h", "--mde", "2pp", "--json"]) == 0
    )
    [result] = json.loads(capsys.readouterr().out)
    assert (result["a"]["value"], result["b"]["value"]) == (0.6, 0.9)
    assert (result["a"]["units"], result["b"]["units"]) == (10, 10)
    assert result["difference"] == pytest.approx(0.3)
    assert result["power"]["mde"] == pytest.approx(0.02)
    assert result["underpowered"] is True
    assert any("too few units" in w for w in result["warnings"])

    assert main([*argv, "--metric", "completion_rate", "--since", "1h"]) == 0
    table = capsys.readouterr().out
    assert "60.00 %" in table
    assert "90.00 %" in table
    assert "+30.00 pp" in table

    assert (
        main(
            [
                "eval",
                "report",
                "--suite",
                "smoke",
                "--baseline",
                "1.0",
                "--candidate",
                "2.0",
                "--json",
            ]
        )
        == 0
    )
    figures = {r["metric"]: r for r in json.loads(capsys.readouterr().out)}
    assert figures["accuracy"]["a"]["value"] == 0.6
    assert figures["accuracy"]["b"]["value"] == 0.9
    assert figures["p50_latency"]["a"]["value"] == 550.0
    assert figures["cost_per_task"]["difference"] == pytest.approx(0.0, abs=1e-12)

    assert main([*argv, "--metric", "completion_rate", "--mde", "lots"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentstream: error: --mde: 'lots' is not a number")
    assert err.count("\n") == 1
    assert main(["report", "business", "--since", "30d", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # no rollups in this folder
