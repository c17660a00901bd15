"""Analyst access end to end: keys and the CLI (on the folder)."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentstream.cli import main
from agentstream.core.config import ClickHouseSettings, get_settings, load_settings
from agentstream.core.errors import AuthenticationFailed, KeyStoreError
from agentstream.devtools.localstack._system import free_ports
from agentstream.sinks.analyst import (
    KeyStore,
)
from agentstream.sinks.clickhouse import ClickHouseBackend, open_backend
from tests.support.analyst_data import TENANTS, populate, tool_calls
from tests.support.hostile_sql import HOSTILE

pytestmark = pytest.mark.integration

# -- keys ----------------------------------------------------------------------------------


def test_keys_are_stored_hashed_and_authenticate_by_secret(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, secret = store.create("ana", "oncall")
    text = (tmp_path / "keys.json").read_text()
    assert secret not in text
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    assert store.authenticate("ana", secret).role == "oncall"
    with pytest.raises(AuthenticationFailed):
        store.authenticate("ana", secret + "x")
    with pytest.raises(AuthenticationFailed):
        store.authenticate("bob", secret)
    with pytest.raises(KeyStoreError, match="exists"):
        store.create("ana", "admin")
    with pytest.raises(KeyStoreError, match="needs --tenant"):
        store.create("t", "tenant")
    with pytest.raises(KeyStoreError, match="only tenant keys"):
        store.create("t", "oncall", "acme")
    # another process (the CLI) revokes: this store sees it without a restart
    KeyStore(tmp_path / "keys.json").revoke("ana")
    with pytest.raises(AuthenticationFailed):
        store.authenticate("ana", secret)
    assert key.name == "ana"


# -- the CLI -------------------------------------------------------------------------------


@dataclass
class CliEnv:
    database: str
    keys_file: Path
    monkeypatch: pytest.MonkeyPatch

    def use_secret(self, secret: str) -> None:
        self.monkeypatch.setenv("AGENTSTREAM_ANALYST__KEY_SECRET", secret)
        get_settings.cache_clear()


@pytest.fixture
def cli_env(chdb_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliEnv]:
    database = f"cli_{uuid.uuid4().hex[:10]}"
    keys_file = tmp_path / "keys.json"
    monkeypatch.setenv("AGENTSTREAM_CLICKHOUSE__PATH", str(chdb_path))
    monkeypatch.setenv("AGENTSTREAM_CLICKHOUSE__DATABASE", database)
    monkeypatch.setenv("AGENTSTREAM_ANALYST__KEYS_FILE", str(keys_file))
    # a port nothing listens on: the CLI goes to the folder, not to a worker
    monkeypatch.setenv("AGENTSTREAM_WORKER__WEB_PORT", str(free_ports("127.0.0.1", 1)[0]))
    get_settings.cache_clear()
    yield CliEnv(database, keys_file, monkeypatch)
    get_settings.cache_clear()
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    backend.command(f"DROP DATABASE IF EXISTS {database}")
    backend.close()


def _secret(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_cli_keys_create_list_revoke(cli_env: CliEnv, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "tina", "--role", "tenant", "--tenant", "acme"]) == 0
    out = capsys.readouterr().out
    secret = _secret(out)
    assert secret.startswith("ask_")
    assert secret not in cli_env.keys_file.read_text()
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"tina\s+tenant\s+acme", listing)
    assert secret not in listing
    assert main(["keys", "create", "tina", "--role", "admin"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["keys", "revoke", "tina"]) == 0
    assert main(["keys", "revoke", "tina"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentstream: error: no key named 'tina'")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "--help"],
        ["keys", "create", "--help"],
        ["keys", "list", "--help"],
        ["keys", "revoke", "--help"],
        ["query", "--help"],
        ["report", "--help"],
        ["migrate", "--help"],
    ],
)
def test_every_command_answers_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: agentstream" in capsys.readouterr().out


def test_cli_query_report_with_keys_and_as_operator(
    cli_env: CliEnv, chdb_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    assert "migrations applied: 0001, 0002, 0003, 0004" in capsys.readouterr().out
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=cli_env.database))
    try:
        populate(backend, load_settings())
    finally:
        backend.close()
    assert main(["keys", "create", "olive", "--role", "oncall"]) == 0
    oncall = _secret(capsys.readouterr().out)
    assert main(["keys", "create", "tina", "--role", "tenant", "--tenant", "acme"]) == 0
    tenant = _secret(capsys.readouterr().out)

    cli_env.use_secret(oncall)
    sql = "SELECT tool, count() AS n FROM tool_calls_dedup GROUP BY tool ORDER BY tool"
    assert main(["query", sql, "--key", "olive", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    per_tool = Counter(c.tool for t, n in TENANTS.items() for c in tool_calls(t, n))
    assert rows == [["tool", "n"], *([tool, str(n)] for tool, n in sorted(per_tool.items()))]
    assert main(["query", "SELECT count() FROM query_audit", "--key", "olive"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentstream: error: key 'olive' (oncall) may not read query_audit")
    assert err.count("\n") == 1

    cli_env.use_secret(tenant)
    assert (
        main(["query", "SELECT count() AS n FROM tool_calls", "--key", "tina", "--format", "json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out) == [{"n": TENANTS["acme"]}]
    assert (
        main(["report", "cost-tenant", "--since", "1h", "--key", "tina", "--tenant", "globex"]) == 1
    )
    assert "cannot report on 'globex'" in capsys.readouterr().err

    cli_env.use_secret("ask_wrong")
    assert main(["query", "SELECT 1", "--key", "tina"]) == 1
    assert "Authentication failed" in capsys.readouterr().err

    # the operator (no key) is admin on the folder
    assert (
        main(["query", "SELECT key_name, outcome FROM query_audit ORDER BY at", "--format", "json"])
        == 0
    )
    audit = json.loads(capsys.readouterr().out)
    assert [(a["key_name"], a["outcome"]) for a in audit] == [
        ("olive", "ok"),
        ("olive", "refused"),
        ("tina", "ok"),
        ("tina", "refused"),
        ("tina", "unauthenticated"),
    ]
    assert main(["report", "top-errors", "--since", "1h", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report[0]["tool"] == "tool-0"


#: every 8th hostile statement through the CLI on the folder (opening chdb costs ~1 s a call);
#: all of them go through the CLI's worker path below
HOSTILE_SAMPLE = HOSTILE[::8]


def test_hostile_statements_are_refused_through_the_cli_on_the_folder_and_audited(
    cli_env: CliEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    assert main(["keys", "create", "olive", "--role", "oncall"]) == 0
    cli_env.use_secret(_secret(capsys.readouterr().out))
    for sql in HOSTILE_SAMPLE:
        assert main(["query", sql, "--key", "olive"]) == 1, sql
        err = capsys.readouterr().err
        assert err.startswith("agentstream: error: "), sql
        assert err.count("\n") == 1, sql
    assert (
        main(
            [
                "query",
                "SELECT outcome, count() AS n FROM query_audit GROUP BY outcome",
                "--format",
                "json",
            ]
        )
        == 0
    )
    counts = {r["outcome"]: r["n"] for r in json.loads(capsys.readouterr().out)}
    assert counts == {"refused": len(HOSTILE_SAMPLE)}


def test_migrate_print_shows_rendered_ddl_and_the_analyst_users(
    cli_env: CliEnv, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTSTREAM_RETENTION__BUSINESS_DAYS", "45")
    monkeypatch.setenv("AGENTSTREAM_CLICKHOUSE__ANALYST_PASSWORD", "pw-never-printed")
    get_settings.cache_clear()
    assert main(["keys", "create", "tina", "--role", "tenant", "--tenant", "acme"]) == 0
    capsys.readouterr()
    assert main(["migrate", "--print"]) == 0
    out = capsys.readouterr().out
    assert "INTERVAL 45 DAY DELETE WHERE retention = 'BUSINESS'" in out
    assert not re.search(r"\{\{\s*\w", out)
    assert "pw-never-printed" not in out
    assert "CREATE USER IF NOT EXISTS `agentstream_analyst` IDENTIFIED WITH sha256_hash" in out
    assert "CREATE ROW POLICY IF NOT EXISTS `agentstream_analyst_t_tina`" in out
    assert "USING tenant_id = 'acme' AS RESTRICTIVE TO `agentstream_analyst_t_tina`" in out


def test_the_server_mode_ddl_parses_in_the_engine(
    clickhouse: ClickHouseBackend, tmp_path: Path
) -> None:
    """chdb has no access control to run it on; its ClickHouse parser checks every statement."""
    from agentstream.sinks.analyst import analyst_ddl

    store = KeyStore(tmp_path / "keys.json")
    store.create("tina", "tenant", "acme")
    store.create("olive", "oncall")
    settings = load_settings(clickhouse={"analyst_password": "pw"})
    statements = analyst_ddl(settings, store.keys())
    kinds = [s.split(" IF NOT EXISTS")[0].split(" ON ")[0] for s in statements]
    assert kinds.count("CREATE USER") == 2  # the analyst user and tina's
    assert kinds.count("CREATE ROW POLICY") == 1
    for statement in statements:
        ast = clickhouse.query(f"EXPLAIN AST {statement}").rows
        assert ast, statement
