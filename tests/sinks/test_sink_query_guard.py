"""Analyst queries are read-only, role-scoped and always audited."""

from __future__ import annotations

import datetime as dt

import pytest

from agentstream.core.config import load_settings
from agentstream.core.errors import QueryRefused
from agentstream.sinks.analyst import Identity, LocalAnalyst, check_read_only
from agentstream.sinks.clickhouse import ClickHouseBackend, migrate

ALLOWED = [
    "SELECT 1",
    "select count() from tool_calls_dedup where tenant_id = 'acme'",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    "(SELECT 1) UNION ALL (SELECT 2)",
    "SHOW TABLES",
    "DESCRIBE TABLE tool_calls",
    "DESC tool_calls",
    "EXPLAIN SELECT * FROM tool_calls",
    "SELECT 1;",
    "SELECT 1;  -- trailing comment",
    "SELECT 'DROP TABLE x; INSERT' AS s",
    'SELECT 1 AS "delete; drop"',
    "SELECT 1 AS `a``;b`",
    "SELECT 'it''s; fine', 'esc\\'; aped'",
    "-- a leading comment\nSELECT 1",
    "/* outer /* nested ; DROP */ still comment ; */ SELECT 1",
    "SELECT name FROM system.tables",
    "SELECT replace(tool, 'a', 'b') FROM tool_calls",
    "SELECT count() FROM tool_calls ORDER BY 1 DESC",
]

REFUSED = [
    ("INSERT INTO tool_calls SELECT * FROM tool_calls", "INSERT"),
    ("DROP TABLE tool_calls", "DROP"),
    ("drop table tool_calls", "DROP"),
    ("ALTER TABLE tool_calls DELETE WHERE 1", "ALTER"),
    ("TRUNCATE TABLE tool_calls", "TRUNCATE"),
    ("OPTIMIZE TABLE tool_calls FINAL", "OPTIMIZE"),
    ("SET max_threads = 1", "SET"),
    ("SYSTEM STOP MERGES", "SYSTEM"),
    ("KILL QUERY WHERE 1", "KILL"),
    ("SELECT 1; DROP TABLE tool_calls", "one statement"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("SELECT 1 --x\n; DROP TABLE t", "one statement"),
    ("SELECT 1 /* c */ ; /* c */ DROP TABLE t", "one statement"),
    ("EXPLAIN INSERT INTO t SELECT 1", "INSERT"),
    ("WITH 1 AS x INSERT INTO t SELECT x", "INSERT"),
    ("SELECT 1 INTO OUTFILE '/tmp/x.csv'", "OUTFILE"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file()"),
    ("SELECT * FROM url('http://example.com/x', CSV)", "url()"),
    ("SELECT * FROM s3('https://b/x')", "s3()"),
    ("SELECT * FROM remote('host', db.t)", "remote()"),
    ("SELECT * FROM executable('x.sh', CSV, 'a String')", "executable()"),
    ("SELECT $$a; b$$", "heredoc"),
    ("SELECT 'unterminated", "unterminated"),
    ("SELECT 1 /* unterminated", "unterminated"),
    ("", "empty"),
    ("   -- only a comment", "empty"),
    ("GRANT SELECT ON *.* TO x", "GRANT"),
    ("CREATE TABLE x (a UInt8) ENGINE = Memory", "CREATE"),
    ("RENAME TABLE a TO b", "RENAME"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_read_only_statements_pass(sql: str) -> None:
    checked = check_read_only(sql)
    assert not checked.rstrip().endswith(";")


@pytest.mark.parametrize(("sql", "why"), REFUSED)
def test_writes_and_tricks_are_refused_with_a_reason(sql: str, why: str) -> None:
    with pytest.raises(QueryRefused, match=why.replace("(", r"\(").replace(")", r"\)")):
        check_read_only(sql)


def test_a_refusal_is_one_line() -> None:
    with pytest.raises(QueryRefused) as info:
        check_read_only("SELECT 1;\nDROP TABLE t")
    assert "\n" not in str(info.value)


def test_forbidden_tables_are_refused_even_quoted() -> None:
    for sql in (
        "SELECT * FROM query_audit",
        "SELECT * FROM `query_audit`",
        "SELECT * FROM db.query_audit",
    ):
        with pytest.raises(QueryRefused, match="may not read"):
            check_read_only(sql, forbidden_tables=["query_audit"])
    assert check_read_only("SELECT 'query_audit'", forbidden_tables=["query_audit"])


# -- on the engine: the audit -----------------------------------------------------------


def _audit(backend: ClickHouseBackend) -> list[dict[str, object]]:
    return backend.query(
        "SELECT who, role, tenant_scope, via, kind, report, statement, rows, refused, error "
        "FROM query_audit ORDER BY at"
    ).dicts()


@pytest.mark.integration
def test_a_write_is_refused_and_the_refusal_is_audited(clickhouse: ClickHouseBackend) -> None:
    migrate(clickhouse, load_settings())
    analyst = LocalAnalyst(clickhouse, Identity("mallory"))
    statement = "DROP TABLE tool_calls"
    with pytest.raises(QueryRefused):
        analyst.query(statement)
    tables = clickhouse.query("SELECT count() FROM system.tables WHERE name = 'tool_calls'")
    assert tables.scalar() >= 1  # still there
    [row] = _audit(clickhouse)
    assert row["who"] == "mallory"
    assert row["statement"] == statement
    assert row["refused"] is True
    assert "DROP" in str(row["error"])
    assert row["rows"] == 0


@pytest.mark.integration
def test_every_query_is_audited_with_its_row_count(clickhouse: ClickHouseBackend) -> None:
    migrate(clickhouse, load_settings())
    analyst = LocalAnalyst(clickhouse, Identity("alice", "oncall"))
    result = analyst.query("SELECT number FROM numbers(7)")
    assert len(result.rows) == 7
    with pytest.raises(QueryRefused, match="may not read query_audit"):
        analyst.query("SELECT * FROM query_audit")
    first, second = _audit(clickhouse)
    assert (first["who"], first["role"], first["rows"], first["refused"]) == (
        "alice",
        "oncall",
        7,
        False,
    )
    assert first["statement"] == "SELECT number FROM numbers(7)"
    assert first["via"] == "direct"
    assert first["kind"] == "query"
    assert second["refused"] is True


@pytest.mark.integration
def test_tenant_analysts_get_their_own_reports_only(clickhouse: ClickHouseBackend) -> None:
    migrate(clickhouse, load_settings())
    analyst = LocalAnalyst(clickhouse, Identity("tina", "tenant", tenant="acme"))
    with pytest.raises(QueryRefused, match="canned reports"):
        analyst.query("SELECT 1")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with pytest.raises(QueryRefused, match="cannot report on 'globex'"):
        analyst.report("top-tools", since=since, tenant="globex")
    analyst.report("top-tools", since=since)
    rows = _audit(clickhouse)
    assert [r["refused"] for r in rows] == [True, True, False]
    assert rows[2]["report"] == "top-tools"
    assert rows[2]["tenant_scope"] == "acme"
    assert "tenant_id = {tenant:String}" in str(rows[2]["statement"])


def test_identities_are_checked() -> None:
    with pytest.raises(QueryRefused, match="needs a tenant"):
        Identity("x", "tenant")
    with pytest.raises(QueryRefused, match="unknown role"):
        Identity("x", "root")  # type: ignore[arg-type]
