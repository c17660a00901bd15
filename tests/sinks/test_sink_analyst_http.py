"""The analysts' ClickHouse HTTP interface, with real clients (clickhouse-connect, the CLI)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, ProgrammingError

from agentstream.cli import main
from agentstream.core.config import ClickHouseSettings, get_settings, load_settings
from agentstream.core.errors import AuthenticationFailed
from agentstream.schemas import ToolCall
from agentstream.sinks.analyst import (
    HANDSHAKE_QUERIES,
    REPORTS,
    AnalystEngine,
    AnalystHttp,
    HttpAnalyst,
    KeyStore,
    render_report,
)
from agentstream.sinks.clickhouse import ClickHouseBackend, migrate, open_backend
from tests.support.analyst_data import TENANTS, audit_rows, populate
from tests.support.analyst_http import serve_analyst_http
from tests.support.hostile_sql import HOSTILE

pytestmark = pytest.mark.integration

# -- the ClickHouse HTTP interface ---------------------------------------------------------


@dataclass
class Interface:
    port: int
    backend: ClickHouseBackend
    keys: KeyStore
    secrets: dict[str, str]
    calls: list[ToolCall]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str) -> clickhouse_connect.driver.Client:
        return clickhouse_connect.get_client(
            host="127.0.0.1", port=self.port, username=key, password=self.secrets[key]
        )

    def request(
        self,
        sql: str | None = None,
        *,
        args: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        method: str | None = None,
        path: str = "/",
    ) -> tuple[int, dict[str, str], bytes]:
        query = dict(args or {})
        if sql is not None:
            query["query"] = sql
        request = urllib.request.Request(
            f"{self.url}{path}?{urllib.parse.urlencode(query)}",
            data=body,
            headers=headers or {},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), exc.read()

    def auth(self, key: str) -> dict[str, str]:
        return {"X-ClickHouse-User": key, "X-ClickHouse-Key": self.secrets[key]}


@pytest.fixture(scope="module")
def served(chdb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interface]:
    """One populated database and a served interface for the module (populating is slow)."""
    database = f"http_{uuid.uuid4().hex[:10]}"
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
    settings = load_settings(analyst={"keys_file": keys_file, "max_body_bytes": 4096})
    try:
        calls = populate(backend, settings)
        keys = KeyStore(settings.analyst.keys_file)
        secrets = {
            "ada": keys.create("ada", "admin")[1],
            "olive": keys.create("olive", "oncall")[1],
            **{f"t-{t}": keys.create(f"t-{t}", "tenant", t)[1] for t in TENANTS},
        }
        http = AnalystHttp(AnalystEngine(backend, settings.analyst), keys, settings.analyst)
        with serve_analyst_http(http) as port:
            yield Interface(port, backend, keys, secrets, calls)
    finally:
        backend.command(f"DROP DATABASE IF EXISTS {database}")
        backend.close()


@pytest.fixture
def interface(served: Interface) -> Interface:
    """The served interface with an empty audit."""
    served.backend.command("TRUNCATE TABLE query_audit")
    return served


def test_ping_and_the_ok_page(interface: Interface) -> None:
    assert interface.request(path="/ping")[::2] == (200, b"Ok.\n")
    assert interface.request()[::2] == (200, b"Ok.\n")
    assert audit_rows(interface.backend) == []  # pings are not queries


def test_clickhouse_connect_runs_the_canned_reports(interface: Interface) -> None:
    client = interface.client("olive")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    for name in REPORTS:
        sql, params = render_report(name, since=since, bucket_s=60)
        result = client.query(sql, parameters=params)
        if name == "top-tools":
            assert sum(r[1] for r in result.result_rows) == len(interface.calls)
    count = client.query("SELECT count() AS n, max(event_time) AS last FROM tool_calls_dedup")
    assert count.result_rows[0][0] == len(interface.calls)
    assert isinstance(count.result_rows[0][1], dt.datetime)
    kinds = [r["kind"] for r in audit_rows(interface.backend, "key_name = 'olive'")]
    assert kinds.count("handshake") == 2  # version/timezone and the settings table
    # the reports, the count, and clickhouse-connect's protocol probe (SELECT 1 AS check)
    assert kinds.count("query") == len(REPORTS) + 2


@pytest.mark.parametrize("tenant", list(TENANTS))
def test_a_tenant_key_sees_only_its_tenant(interface: Interface, tenant: str) -> None:
    client = interface.client(f"t-{tenant}")
    expected = sum(1 for c in interface.calls if c.tenant_id == tenant)
    assert client.query("SELECT count() FROM tool_calls").result_rows == [(expected,)]
    assert client.query("SELECT count() FROM tool_calls_dedup").result_rows == [(expected,)]
    others = client.query(
        "SELECT count() FROM tool_calls WHERE tenant_id != {t:String}", parameters={"t": tenant}
    )
    assert others.result_rows == [(0,)]
    union = client.query(
        "SELECT DISTINCT tenant_id FROM (SELECT tenant_id FROM tool_calls "
        "UNION ALL SELECT tenant_id FROM tool_calls_dedup)"
    )
    assert union.result_rows == [(tenant,)]
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    sql, params = render_report("top-tools", since=since)  # no tenant: the key scopes it
    calls = sum(r[1] for r in client.query(sql, parameters=params).result_rows)
    assert calls == expected
    with pytest.raises(DatabaseError, match="497"):
        client.query("SELECT count() FROM alerts")


def test_hostile_statements_are_refused_over_http_and_audited(interface: Interface) -> None:
    for n, sql in enumerate(HOSTILE):
        if n % 2:  # the query in the URL
            status, headers, body = interface.request(sql, headers=interface.auth("olive"))
        else:  # the query in the body
            status, headers, body = interface.request(
                headers=interface.auth("olive"), body=sql.encode(), method="POST"
            )
        assert 400 <= status < 500, (sql, status, body)
        assert body.startswith(b"Code: "), (sql, body)
        assert b"DB::Exception: " in body
        assert (
            headers["X-ClickHouse-Exception-Code"]
            == body.split(b".")[0].removeprefix(b"Code: ").decode()
        )
    audit = audit_rows(interface.backend)
    assert len(audit) == len(HOSTILE)
    assert all(a["outcome"] in ("refused", "malformed") for a in audit)
    assert all(a["statement_run"] == "" for a in audit)  # nothing ran
    assert {a["key_name"] for a in audit} == {"olive"}


def test_hostile_statements_are_refused_through_the_cli_via_the_worker_and_audited(
    interface: Interface, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTSTREAM_WORKER__WEB_PORT", str(interface.port))
    monkeypatch.setenv("AGENTSTREAM_ANALYST__KEY_SECRET", interface.secrets["olive"])
    get_settings.cache_clear()
    try:
        for sql in HOSTILE:
            assert main(["query", sql, "--key", "olive"]) == 1, sql
            err = capsys.readouterr().err
            assert err.startswith("agentstream: error: Code: "), (sql, err)
            assert err.count("\n") == 1, sql
        assert main(["query", "SELECT count() AS n FROM tool_calls", "--key", "olive"]) == 0
    finally:
        get_settings.cache_clear()
    audit = audit_rows(interface.backend)
    assert len(audit) == len(HOSTILE) + 1
    assert all(a["outcome"] in ("refused", "malformed") for a in audit[:-1])
    assert audit[-1]["outcome"] == "ok"
    assert {(a["key_name"], a["via"]) for a in audit} == {("olive", "http")}


def test_clickhouse_connect_is_refused_the_same(interface: Interface) -> None:
    client = interface.client("olive")
    for sql in (
        "SELECT * FROM system.tables",
        "SELECT * FROM `file`('/etc/passwd', 'LineAsString')",
    ):
        with pytest.raises(DatabaseError, match="Code: 497"):
            client.query(sql)
    with pytest.raises(ProgrammingError, match="readonly"):  # the settings table says so
        client.query("SELECT 1", settings={"readonly": 0})


def test_authentication_headers_basic_and_url(interface: Interface) -> None:
    secret = interface.secrets["ada"]
    basic = base64.b64encode(f"ada:{secret}".encode()).decode()
    for kwargs in (
        {"headers": interface.auth("ada")},
        {"headers": {"Authorization": f"Basic {basic}"}},
        {"args": {"user": "ada", "password": secret}},
    ):
        status, _, body = interface.request("SELECT 40 + 2", **kwargs)  # type: ignore[arg-type]
        assert (status, body) == (200, b"42\n")
    for kwargs in (
        {},
        {"headers": {"X-ClickHouse-User": "ada", "X-ClickHouse-Key": "nope"}},
        {"args": {"user": "nobody", "password": secret}},
        {"headers": {"Authorization": "Bearer " + secret}},
    ):
        status, headers, body = interface.request("SELECT 1", **kwargs)  # type: ignore[arg-type]
        assert status == 401
        assert headers["X-ClickHouse-Exception-Code"] == "516"
        assert b"Authentication failed" in body
    audit = audit_rows(interface.backend)
    assert [a["outcome"] for a in audit] == ["ok"] * 3 + ["unauthenticated"] * 4
    assert audit[5]["key_name"] == "nobody"


def test_the_key_is_checked_before_the_body_is_read_and_the_body_is_limited(
    clickhouse: ClickHouseBackend, tmp_path: Path
) -> None:
    settings = load_settings(analyst={"keys_file": tmp_path / "keys.json", "max_body_bytes": 1024})
    migrate(clickhouse, settings)
    keys = KeyStore(settings.analyst.keys_file)
    secret = keys.create("ada", "admin")[1]
    http = AnalystHttp(AnalystEngine(clickhouse, settings.analyst), keys, settings.analyst)
    reads: list[int] = []

    def read_body(n: int) -> bytes:
        reads.append(n)
        return b"SELECT 1"

    reply = http.handle(
        "POST", "/", "", {"Content-Length": "8", "X-ClickHouse-User": "ada"}, read_body
    )
    assert (reply.status, reads) == (401, [])
    big = {"Content-Length": str(10**9), "X-ClickHouse-User": "ada", "X-ClickHouse-Key": secret}
    reply = http.handle("POST", "/", "", big, read_body)
    assert (reply.status, reads) == (413, [])
    assert reply.headers["X-ClickHouse-Exception-Code"] == "307"
    ok = {"Content-Length": "8", "X-ClickHouse-User": "ada", "X-ClickHouse-Key": secret}
    reply = http.handle("POST", "/", "", ok, read_body)
    assert (reply.status, reply.body, reads) == (200, b"1\n", [8])
    reply = http.handle("POST", "/", "", {**ok, "Content-Type": "multipart/form-data"}, read_body)
    assert reply.status == 400
    outcomes = [a["outcome"] for a in audit_rows(clickhouse)]
    assert outcomes == ["unauthenticated", "malformed", "ok", "malformed"]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("TabSeparated", b"acme\t9\n"),
        ("TabSeparatedWithNames", b"tenant_id\tn\nacme\t9\n"),
        ("CSV", b'"acme",9\n'),
        ("JSONEachRow", b'{"tenant_id":"acme","n":9}\n'),
    ],
)
def test_formats_by_default_format_and_by_format_clause(
    interface: Interface, fmt: str, expected: bytes
) -> None:
    sql = "SELECT tenant_id, count() AS n FROM tool_calls GROUP BY tenant_id"
    auth = interface.auth("t-acme")
    status, headers, body = interface.request(sql, args={"default_format": fmt}, headers=auth)
    assert (status, body) == (200, expected)
    assert headers["X-ClickHouse-Format"] == fmt
    status, _, body = interface.request(f"{sql} FORMAT {fmt}", headers=auth)
    assert (status, body) == (200, expected)


def test_json_formats_and_native(interface: Interface) -> None:
    auth = interface.auth("ada")
    status, _, body = interface.request("SELECT 1 AS one FORMAT JSON", headers=auth)
    assert status == 200
    assert json.loads(body)["data"] == [{"one": 1}]
    _, _, body = interface.request("SELECT 1 AS one FORMAT JSONCompact", headers=auth)
    assert json.loads(body)["data"] == [[1]]
    _, headers, body = interface.request("SELECT 1 AS one FORMAT Native", headers=auth)
    assert headers["Content-Type"] == "application/octet-stream"
    assert body == b"\x01\x01\x03one\x05UInt8\x01"
    status, headers, body = interface.request("SELECT 1 FORMAT Parquet", headers=auth)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "73")


def test_transport_arguments_are_accepted_settings_are_refused(interface: Interface) -> None:
    auth = interface.auth("olive")
    args = {
        "database": interface.backend.database,
        "session_id": "s1",
        "wait_end_of_query": "1",
        "query_id": "q-42",
        "client_protocol_version": "54405",
    }
    status, headers, body = interface.request("SELECT 7", args=args, headers=auth)
    assert (status, body, headers["X-ClickHouse-Query-Id"]) == (200, b"7\n", "q-42")
    status, headers, body = interface.request(
        "SELECT 7", args={"max_result_rows": "0"}, headers=auth
    )
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "164")
    status, headers, _ = interface.request("SELECT 7", args={"database": "system"}, headers=auth)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "81")
    status, _, body = interface.request(
        "SELECT {n:UInt8} * 2", args={"param_n": "21"}, headers=auth
    )
    assert (status, body) == (200, b"42\n")


def test_handshake_queries_are_answered_from_the_fixed_table(interface: Interface) -> None:
    auth = interface.auth("t-acme")
    for sql in HANDSHAKE_QUERIES:
        status, _, body = interface.request(sql, headers=auth)
        assert status == 200, (sql, body)
    _, _, body = interface.request("SHOW TABLES", headers=auth)
    tables = body.decode().split()
    assert "tool_calls_dedup" in tables
    assert "alerts" not in tables
    assert "query_audit" not in tables
    _, _, body = interface.request(
        "SELECT name, value, readonly FROM system.settings LIMIT 10000", headers=auth
    )
    settings = dict(line.split("\t")[:2] for line in body.decode().splitlines())
    assert settings["readonly"] == "1"
    assert settings["max_execution_time"] == "5"
    # anything else on system.* is refused, however close to a handshake query
    status, _, _ = interface.request("SELECT name, value FROM system.settings", headers=auth)
    assert status == 403
    kinds = [a["kind"] for a in audit_rows(interface.backend)]
    assert kinds == ["handshake"] * (len(HANDSHAKE_QUERIES) + 2) + ["query"]


def test_engine_errors_come_back_as_clickhouse_errors(interface: Interface) -> None:
    status, headers, body = interface.request(
        "SELECT no_such_column FROM tool_calls", headers=interface.auth("olive")
    )
    assert 400 <= status < 600
    assert body.startswith(b"Code: 47. DB::Exception:")
    assert headers["X-ClickHouse-Exception-Code"] == "47"
    [row] = audit_rows(interface.backend)
    assert row["outcome"] == "failed"
    assert str(row["statement_run"]).startswith(
        'SELECT "no_such_column" FROM "tool_calls" SETTINGS'
    )


def test_the_cli_client_goes_through_the_interface(interface: Interface) -> None:
    analyst = HttpAnalyst(interface.url, "t-globex", interface.secrets["t-globex"])
    assert analyst.query("SELECT count() AS n FROM tool_calls").rows == [(TENANTS["globex"],)]
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    report = analyst.report("top-tools", since=since)
    assert sum(r["calls"] for r in report.dicts()) == TENANTS["globex"]
    with pytest.raises(AuthenticationFailed):
        HttpAnalyst(interface.url, "t-globex", "wrong").query("SELECT 1")


def test_the_server_backend_reads_through_the_interface(interface: Interface) -> None:
    """Server mode's read path (clickhouse-connect as an analyst user) against the interface."""
    from agentstream.sinks.clickhouse._server import ServerClickHouse

    settings = ClickHouseSettings(
        backend="server",
        host="127.0.0.1",
        port=interface.port,
        username="t-acme",
        password=interface.secrets["t-acme"],
        database=interface.backend.database,
    )
    server = ServerClickHouse(settings, create_database=False)
    try:
        body, _ = server.query_raw("SELECT count() FROM tool_calls", "TabSeparated")
        assert body == f"{TENANTS['acme']}\n".encode()
        result = server.query("SELECT tenant_id, count() AS n FROM tool_calls GROUP BY tenant_id")
        assert result.rows == [("acme", TENANTS["acme"])]
        assert server.ping()
    finally:
        server.close()
    outcomes = [
        (a["key_name"], a["outcome"]) for a in audit_rows(interface.backend, "kind = 'query'")
    ]
    assert outcomes[-2:] == [("t-acme", "ok"), ("t-acme", "ok")]
