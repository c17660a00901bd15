"""The embedded ClickHouse is the real engine: rows written are rows read."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from agentstream.core.config import ClickHouseSettings
from agentstream.core.errors import StorageError
from agentstream.sinks.clickhouse import ClickHouseBackend, open_backend
from agentstream.sinks.clickhouse._embedded import EmbeddedClickHouse

pytestmark = pytest.mark.integration


def test_engine_answers_with_a_version(clickhouse: ClickHouseBackend) -> None:
    assert clickhouse.ping()
    major = int(clickhouse.version().split(".")[0])
    assert major >= 24


def test_write_and_read_back_a_row(clickhouse: ClickHouseBackend) -> None:
    clickhouse.command(
        "CREATE TABLE events (event_id String, at DateTime64(6, 'UTC'), raw String, "
        "tags Array(String), note Nullable(String), latency Float64) "
        "ENGINE = MergeTree ORDER BY event_id"
    )
    at = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)
    raw = bytes(range(256))
    row = ("e-1", at, raw, ["a'b", "c\td"], None, 12.5)
    written = clickhouse.insert(
        "events", ["event_id", "at", "raw", "tags", "note", "latency"], [row]
    )
    assert written == 1
    result = clickhouse.query(
        "SELECT event_id, at, hex(raw), tags, note, latency FROM events "
        "WHERE event_id = {id:String}",
        {"id": "e-1"},
    )
    assert result.rows == [("e-1", at, raw.hex().upper(), ["a'b", "c\td"], None, 12.5)]


def test_dedup_token_makes_a_replayed_batch_a_no_op(clickhouse: ClickHouseBackend) -> None:
    clickhouse.command(
        "CREATE TABLE d (k UInt64) ENGINE = MergeTree ORDER BY k "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    rows = [(i,) for i in range(10)]
    clickhouse.insert("d", ["k"], rows, dedup_token="batch-1")
    clickhouse.insert("d", ["k"], rows, dedup_token="batch-1")
    clickhouse.insert("d", ["k"], rows[:3], dedup_token="batch-2")
    assert clickhouse.query("SELECT count(), sum(k) FROM d").rows == [(13, 45 + 3)]


def test_data_survives_reopening_the_folder(chdb_path: Path) -> None:
    settings = ClickHouseSettings(path=chdb_path, database="persist_check")
    first = open_backend(settings)
    first.command("CREATE TABLE IF NOT EXISTS p (pid UInt32) ENGINE = MergeTree ORDER BY pid")
    first.insert("p", ["pid"], [(os.getpid(),)])
    first.close()
    second = open_backend(settings)
    try:
        assert second.query("SELECT pid FROM p").rows == [(os.getpid(),)]
    finally:
        second.command("DROP DATABASE persist_check")
        second.close()


def test_bad_sql_is_a_storage_error_naming_the_problem(clickhouse: ClickHouseBackend) -> None:
    with pytest.raises(StorageError, match=r"SYNTAX_ERROR|Syntax error"):
        clickhouse.query("SELEC 1")


def test_a_failed_query_leaves_nothing_in_the_next_result(clickhouse: ClickHouseBackend) -> None:
    """chdb keeps a failed query's opening output (JSON's ``meta``) for the next query's
    result: another caller's column names, and JSON that no longer parses."""
    clickhouse.command(
        "CREATE TABLE leak (secret_column UInt64) ENGINE = MergeTree ORDER BY tuple()"
    )
    clickhouse.command("INSERT INTO leak SELECT number FROM numbers(3000)")
    overflow = (
        "SELECT secret_column FROM leak "
        "SETTINGS max_result_rows = 5, result_overflow_mode = 'throw'"
    )
    with pytest.raises(StorageError, match=r"TOO_MANY_ROWS|Limit for result exceeded"):
        clickhouse.query(overflow)
    assert clickhouse.query("SELECT 7 AS a").scalar() == 7
    assert isinstance(clickhouse, EmbeddedClickHouse)  # the analyst HTTP interface's path
    with pytest.raises(StorageError, match=r"TOO_MANY_ROWS|Limit for result exceeded"):
        clickhouse.query_raw(overflow, "JSONCompact")
    body, _rows = clickhouse.query_raw("SELECT 8 AS b", "JSONCompact")
    assert b"secret_column" not in body
    assert json.loads(body)["data"] == [[8]]
