"""Checked SQL: parsed, checked against the key, tenant-scoped, re-rendered — and audited."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from agentstream.core.config import load_settings
from agentstream.core.errors import QueryRefused, QueryUnparsable, StorageError
from agentstream.schemas import ToolCall
from agentstream.sinks.analyst import (
    REPORTS,
    AnalystEngine,
    LocalAnalyst,
    Principal,
    check_statement,
    is_allowed_function,
)
from agentstream.sinks.clickhouse import ClickHouseBackend, ClickHouseSink, migrate
from tests.support.hostile_sql import HOSTILE, HOSTILE_FOR_TENANTS, TABLE_FUNCTIONS

ADMIN = Principal("ada", "admin")
ONCALL = Principal("olive", "oncall")
ACME = Principal("tina", "tenant", "acme")

ALLOWED = [
    "SELECT 1",
    "select count() from tool_calls_dedup where tenant_id = 'acme'",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    "WITH 5 AS n SELECT n * 2",
    "(SELECT 1) UNION ALL (SELECT 2)",
    "SELECT tool FROM tool_calls EXCEPT SELECT tool FROM tool_calls_dedup",
    "DESCRIBE TABLE tool_calls",
    "DESC tool_calls_dedup",
    "EXPLAIN SELECT * FROM tool_calls",
    "SELECT 1;",
    "SELECT 1;  -- trailing comment",
    "SELECT 'DROP TABLE x; INSERT' AS s",
    "SELECT 'it''s; fine', 'esc\\'; aped', 'back\\\\slash'",
    "-- a leading comment\nSELECT 1",
    "/* outer /* nested ; DROP */ still comment ; */ SELECT 1",
    "SELECT count() FROM tool_calls FINAL",
    "SELECT t.tool FROM tool_calls AS t JOIN model_calls AS m USING (run_id)",
    "SELECT arrayMap(x -> x * 2, [1, 2]) AS doubled",
    "SELECT toStartOfHour(event_time) AS h, count() FROM tool_calls_dedup GROUP BY h ORDER BY h",
    "SELECT run_id IN (SELECT run_id FROM model_calls) FROM tool_calls",
    "SELECT sum(latency_ms) OVER (PARTITION BY tool) FROM tool_calls",
    "SELECT CAST(1 AS String), 1::UInt8, now() - INTERVAL 1 HOUR",
    "SELECT countIf(status = 'ERROR'), uniqExactIf(run_id, 1 = 1), quantile(0.9)(latency_ms) "
    "FROM tool_calls",
    "SELECT if(latency_ms > 10, 'slow', 'fast') AS speed, multiIf(1 = 1, 'a', 'b') FROM tool_calls",
    "SELECT * FROM tool_calls LIMIT 5 OFFSET 2",
    "SELECT tenant_id, count() FROM rollups_1m_dedup GROUP BY tenant_id",
    "SELECT * FROM (SELECT tool, count() AS n FROM tool_calls GROUP BY tool) WHERE n > 1",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_read_only_statements_pass_and_are_re_rendered(sql: str) -> None:
    for principal in (ADMIN, ONCALL, ACME):
        checked = check_statement(sql, principal)
        assert not checked.sql.rstrip().endswith(";")
        assert "--" not in checked.sql  # comments never run
        assert "/*" not in checked.sql


@pytest.mark.parametrize("sql", HOSTILE)
def test_hostile_statements_are_refused_with_a_one_line_reason(sql: str) -> None:
    for principal in (ONCALL, ACME):
        with pytest.raises(QueryRefused) as info:
            check_statement(sql, principal, known_objects={"schema_migrations", "query_audit"})
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("sql", HOSTILE_FOR_TENANTS)
def test_tenant_keys_are_refused_what_only_staff_may_read(sql: str) -> None:
    check_statement(sql, ONCALL)
    with pytest.raises(QueryRefused):
        check_statement(sql, ACME)


def test_the_hostile_suite_is_large_and_covers_the_table_functions() -> None:
    assert len(HOSTILE) >= 60
    assert len(TABLE_FUNCTIONS) >= 30


def test_what_runs_is_the_checked_tree_not_the_text() -> None:
    # nested comments hide the subquery from ClickHouse and sqlglot alike: only SELECT 1 runs
    checked = check_statement(
        "SELECT /* /* */ (SELECT count() FROM query_audit) /* */ */ 1", ONCALL
    )
    assert checked.sql == "SELECT 1"
    checked = check_statement("SELECT tool AS `t`, 'a\\'b' FROM `tool_calls` -- x", ONCALL)
    assert checked.sql == 'SELECT "tool" AS "t", \'a\'\'b\' FROM "tool_calls"'


def test_admin_reads_the_audit_oncall_does_not() -> None:
    assert check_statement("SELECT count() FROM query_audit", ADMIN).tables == {"query_audit"}
    with pytest.raises(QueryRefused, match="may not read query_audit"):
        check_statement("SELECT count() FROM query_audit", ONCALL)


def test_tenant_statements_read_filtered_subqueries() -> None:
    checked = check_statement(
        "SELECT c.tool FROM tool_calls_dedup AS c WHERE c.run_id IN "
        "(SELECT run_id FROM model_calls FINAL)",
        ACME,
    )
    assert checked.sql == (
        'SELECT "c"."tool" FROM (SELECT * FROM "tool_calls_dedup" WHERE "tenant_id" = \'acme\') '
        'AS "c" WHERE "c"."run_id" IN (SELECT "run_id" FROM (SELECT * FROM "model_calls" FINAL '
        'WHERE "tenant_id" = \'acme\') AS "model_calls")'
    )


def test_formats_only_where_allowed_and_only_whitelisted() -> None:
    assert check_statement("SELECT 1 FORMAT JSONEachRow", ONCALL, allow_format=True).fmt == (
        "JSONEachRow"
    )
    with pytest.raises(QueryRefused, match="FORMAT"):
        check_statement("SELECT 1 FORMAT JSON", ONCALL)
    with pytest.raises(QueryRefused, match="Parquet") as info:
        check_statement("SELECT 1 FORMAT Parquet", ONCALL, allow_format=True)
    assert info.value.code == 73


def test_parameters_only_where_allowed() -> None:
    sql = "SELECT {n:UInt8} + 1"
    with pytest.raises(QueryRefused, match="parameters"):
        check_statement(sql, ONCALL)
    assert check_statement(sql, ONCALL, allow_params=True).sql == "SELECT {n: UInt8} + 1"
    for sneaky in ("SELECT {t:Identifier}", "SELECT * FROM {t:Identifier}"):
        with pytest.raises(QueryRefused):  # an Identifier parameter could name any table
            check_statement(sneaky, ONCALL, allow_params=True)


def test_unparsable_statements_say_so() -> None:
    with pytest.raises(QueryUnparsable) as info:
        check_statement("SELECT 1 AS x // comment", ONCALL)
    assert info.value.code == 62


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("count", True),
        ("COUNT", True),
        ("quantileExactInclusive", True),
        ("uniqExactIf", True),
        ("sumArrayIf", True),
        ("toStartOfInterval", True),
        ("TOSTARTOFINTERVAL", False),
        ("dictGet", False),
        ("file", False),
        ("currentDatabase", False),
        ("getSetting", False),
        ("fileIf", False),
    ],
)
def test_function_allow_list(name: str, allowed: bool) -> None:
    assert is_allowed_function(name) is allowed


@pytest.mark.parametrize("name", list(REPORTS))
def test_every_canned_report_passes_the_checker(name: str) -> None:
    sql = REPORTS[name].render(tenant=True, until=True)
    assert check_statement(sql, ACME, allow_params=True).kind == "select"


# -- on the engine ------------------------------------------------------------------------


def _audit(backend: ClickHouseBackend) -> list[dict[str, object]]:
    return backend.query(
        "SELECT who, key_name, role, tenant_scope, via, kind, report, statement, statement_run, "
        "rows, refused, outcome, error FROM query_audit ORDER BY at"
    ).dicts()


def _engine(backend: ClickHouseBackend) -> AnalystEngine:
    settings = load_settings()
    migrate(backend, settings)
    return AnalystEngine(backend, settings.analyst)


def _calls(tenant: str, n: int) -> list[ToolCall]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return [
        ToolCall(
            tenant_id=tenant,
            user_id="u",
            agent_id="a",
            agent_version="1",
            run_id=f"{tenant}-{i}",
            event_time=now + dt.timedelta(milliseconds=i),
            tool="t",
            status="SUCCESS",
            error_class="NONE",
            latency_ms=1.0,
        )
        for i in range(n)
    ]


@pytest.mark.integration
def test_a_write_is_refused_and_the_refusal_is_audited(clickhouse: ClickHouseBackend) -> None:
    analyst = LocalAnalyst(_engine(clickhouse), Principal("mallory", "oncall"))
    statement = "DROP TABLE tool_calls"
    with pytest.raises(QueryRefused):
        analyst.query(statement)
    tables = clickhouse.query("SELECT count() FROM system.tables WHERE name = 'tool_calls'")
    assert tables.scalar() >= 1  # still there
    [row] = _audit(clickhouse)
    assert (row["key_name"], row["role"], row["outcome"], row["refused"]) == (
        "mallory",
        "oncall",
        "refused",
        True,
    )
    assert row["statement"] == statement
    assert row["statement_run"] == ""
    assert "DROP" in str(row["error"])


@pytest.mark.integration
def test_every_query_is_audited_as_received_and_as_run(clickhouse: ClickHouseBackend) -> None:
    analyst = LocalAnalyst(_engine(clickhouse), ONCALL)
    result = analyst.query("SELECT arrayJoin([1, 2, 3]) AS n -- three")
    assert [r[0] for r in result.rows] == [1, 2, 3]
    [row] = _audit(clickhouse)
    assert row["statement"] == "SELECT arrayJoin([1, 2, 3]) AS n -- three"
    run = str(row["statement_run"])
    assert run.startswith('SELECT arrayJoin([1, 2, 3]) AS "n" SETTINGS max_execution_time = 10')
    assert run.endswith("readonly = 1")
    assert (row["rows"], row["outcome"], row["via"]) == (3, "ok", "direct")


@pytest.mark.integration
def test_tenant_keys_get_free_sql_over_their_own_rows(clickhouse: ClickHouseBackend) -> None:
    engine = _engine(clickhouse)
    sink = ClickHouseSink(clickhouse, load_settings().sink)
    for call in _calls("acme", 7) + _calls("globex", 5):
        sink.add_record(call)
    sink.flush(force=True).raise_for_error()
    acme = LocalAnalyst(engine, ACME)
    assert acme.query("SELECT count() FROM tool_calls").scalar() == 7
    assert (
        acme.query("SELECT count() FROM tool_calls_dedup WHERE tenant_id = 'globex'").scalar() == 0
    )
    union = (
        "SELECT count() FROM (SELECT * FROM tool_calls UNION ALL SELECT * FROM tool_calls_dedup)"
    )
    assert acme.query(union).scalar() == 14
    assert sorted(r[0] for r in acme.query("SELECT DISTINCT tenant_id FROM model_calls").rows) == []
    assert LocalAnalyst(engine, ONCALL).query("SELECT count() FROM tool_calls").scalar() == 12
    with pytest.raises(QueryRefused, match="cannot report on 'globex'"):
        acme.report(
            "top-tools", since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), tenant="globex"
        )
    report = acme.report("top-tools", since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert report.dicts()[0]["calls"] == 7


@pytest.mark.integration
def test_describe_explain_and_ctes_run_for_tenant_keys(clickhouse: ClickHouseBackend) -> None:
    acme = LocalAnalyst(_engine(clickhouse), ACME)
    columns = [r[0] for r in acme.query("DESCRIBE TABLE tool_calls_dedup").rows]
    assert "tenant_id" in columns
    plan = " ".join(str(r[0]) for r in acme.query("EXPLAIN SELECT count() FROM tool_calls").rows)
    assert "count()" in plan
    cte = "WITH x AS (SELECT tool FROM tool_calls) SELECT count() FROM x"
    assert acme.query(cte).scalar() == 0
    assert acme.query("SELECT count() FROM rollups_1m_dedup").scalar() == 0


@pytest.mark.integration
def test_the_engine_enforces_the_limits(clickhouse: ClickHouseBackend) -> None:
    settings = load_settings(
        analyst={"oncall": {"max_result_rows": 5, "max_execution_time_s": 0.5}}
    )
    migrate(clickhouse, settings)
    sink = ClickHouseSink(clickhouse, settings.sink)
    for call in _calls("acme", 3000):
        sink.add_record(call)
    sink.flush(force=True).raise_for_error()
    analyst = LocalAnalyst(AnalystEngine(clickhouse, settings.analyst), ONCALL)
    with pytest.raises(StorageError, match=r"TOO_MANY_ROWS|Limit for result exceeded"):
        analyst.query("SELECT run_id FROM tool_calls")
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"TIMEOUT_EXCEEDED|Timeout exceeded"):
        analyst.query(
            "SELECT count() FROM tool_calls AS a CROSS JOIN tool_calls AS b "
            "CROSS JOIN tool_calls AS c WHERE cityHash64(a.run_id, b.run_id, c.run_id) = 0"
        )
    assert time.monotonic() - started < 10  # 2.7e10 combinations: only the limit ends it
    outcomes = [r["outcome"] for r in _audit(clickhouse)]
    assert outcomes == ["failed", "failed"]


@pytest.mark.integration
def test_additional_table_filters_reach_inside_the_dedup_views(
    clickhouse: ClickHouseBackend,
) -> None:
    """What chdb enforces of the tenant filter by itself: the setting alone, through a view."""
    engine = _engine(clickhouse)
    sink = ClickHouseSink(clickhouse, load_settings().sink)
    for call in _calls("acme", 3) + _calls("globex", 4):
        sink.add_record(call)
    sink.flush(force=True).raise_for_error()
    clause = engine.limits_clause(ACME)
    assert "additional_table_filters" in clause
    # the unscoped statement, with only the engine's filter: the view still sees acme only
    body, _ = engine.reader.query_raw(
        "SELECT count() FROM tool_calls_dedup" + clause, "TabSeparated"
    )
    assert body == b"3\n"
    assert f"'{clickhouse.database}.tool_calls'" in clause  # the view's base table, qualified
