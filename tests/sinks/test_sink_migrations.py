"""Migrations: rendered from the settings, applied once, recorded, and kept in step."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import pytest

from agentstream.core.config import RetentionSettings, Settings, SinkSettings, load_settings
from agentstream.core.errors import ConfigError, StorageError
from agentstream.sinks.clickhouse import (
    TABLES,
    ClickHouseBackend,
    load_migrations,
    migrate,
    render,
    split_statements,
)

ALL_TABLES = {
    *TABLES,
    "query_audit",
    "schema_migrations",
}


def settings(**retention: object) -> Settings:
    return load_settings(retention=retention)


# -- rendering (pure) ------------------------------------------------------------------


def test_retention_ttl_is_rendered_from_settings() -> None:
    text = "TTL_HERE {{ttl_by_retention event_time}}"
    out = render(text, RetentionSettings(business_days=11, legal_days=2222), SinkSettings())
    assert "INTERVAL 11 DAY DELETE WHERE retention = 'BUSINESS'" in out
    assert "INTERVAL 2222 DAY DELETE WHERE retention = 'LEGAL'" in out
    assert "TO VOLUME" not in out


def test_cold_volume_and_storage_policy_only_when_configured() -> None:
    retention = RetentionSettings(cold_volume="cold", storage_policy="tiered", cold_after_days=17)
    out = render("{{ttl_after at legal_days}} {{table_settings}}", retention, SinkSettings())
    assert "toDateTime(at) + INTERVAL 17 DAY TO VOLUME 'cold'" in out
    assert "storage_policy = 'tiered'" in out
    plain = render("{{table_settings}}", RetentionSettings(), SinkSettings(dedup_window=77))
    assert plain == "SETTINGS non_replicated_deduplication_window = 77"


def test_bad_volume_names_and_unknown_macros_are_refused() -> None:
    with pytest.raises(ConfigError, match="COLD_VOLUME"):
        render("{{ttl_after at legal_days}}", RetentionSettings(cold_volume="x'y"), SinkSettings())
    with pytest.raises(StorageError, match="unknown migration macro"):
        render("{{nope}}", RetentionSettings(), SinkSettings())
    with pytest.raises(StorageError, match="unknown retention setting"):
        render("{{ttl_after at cold_volume}}", RetentionSettings(), SinkSettings())


def test_no_day_count_is_written_in_the_migration_files() -> None:
    for migration in load_migrations():
        for statement in split_statements(migration.text):
            assert not re.search(r"INTERVAL\s+\d+", statement), migration.name
            assert "non_replicated_deduplication_window" not in statement


def test_migration_files_are_versioned_and_split_into_statements() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))
    assert versions[0] == 1
    for migration in migrations:
        for statement in split_statements(migration.text):
            assert not statement.endswith(";")
            assert "--" not in statement.splitlines()[0]


# -- on the engine -----------------------------------------------------------------------


def _tables(backend: ClickHouseBackend) -> set[str]:
    result = backend.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine != 'View'"
    )
    return {row[0] for row in result.rows}


@pytest.mark.integration
def test_migrate_creates_every_table_once_and_is_idempotent(clickhouse: ClickHouseBackend) -> None:
    first = migrate(clickhouse, settings())
    assert first.applied == [m.version for m in load_migrations()]
    assert _tables(clickhouse) == ALL_TABLES
    second = migrate(clickhouse, settings())
    assert second.applied == []
    assert second.already_applied == first.applied
    assert second.retention_updated == []
    recorded = clickhouse.query(
        "SELECT version, count() FROM schema_migrations WHERE kind = 'migration' "
        "GROUP BY version ORDER BY version"
    ).rows
    assert recorded == [(v, 1) for v in first.applied]
    views = clickhouse.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View'"
    ).rows
    assert {row[0] for row in views} == {spec.view for spec in TABLES.values()}


@pytest.mark.integration
def test_changed_retention_settings_alter_existing_tables(clickhouse: ClickHouseBackend) -> None:
    migrate(clickhouse, settings())
    report = migrate(clickhouse, settings(business_days=12, rollups_1s_days=3))
    assert "tool_calls" in report.retention_updated
    assert "rollups_1s" in report.retention_updated
    assert "rollups_1h" not in report.retention_updated
    engine = clickhouse.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()"
    ).rows
    full = dict(engine)
    assert "toIntervalDay(12) WHERE retention = 'BUSINESS'" in full["tool_calls"]
    assert "toIntervalDay(3)" in full["rollups_1s"]
    assert (
        migrate(clickhouse, settings(business_days=12, rollups_1s_days=3)).retention_updated == []
    )


@pytest.mark.integration
def test_a_migration_changed_after_it_was_applied_is_an_error(
    clickhouse: ClickHouseBackend, tmp_path: Path
) -> None:
    path = tmp_path / "0001_demo.sql"
    path.write_text("CREATE TABLE IF NOT EXISTS demo (a UInt8) ENGINE = MergeTree ORDER BY a;\n")
    migrate(clickhouse, settings(), migrations=load_migrations(tmp_path))
    path.write_text("CREATE TABLE IF NOT EXISTS demo (a UInt16) ENGINE = MergeTree ORDER BY a;\n")
    with pytest.raises(StorageError, match="0001_demo changed after it was applied"):
        migrate(clickhouse, settings(), migrations=load_migrations(tmp_path))


def _base_type(annotation: object) -> tuple[bool, object]:
    """(nullable, inner annotation) of a model field annotation."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return True, inner[0]
    return False, annotation


@pytest.mark.integration
def test_every_table_covers_its_model_field_for_field(clickhouse: ClickHouseBackend) -> None:
    migrate(clickhouse, settings())
    for spec in TABLES.values():
        columns = dict(
            clickhouse.query(
                "SELECT name, type FROM system.columns "
                "WHERE database = currentDatabase() AND table = {t:String}",
                {"t": spec.name},
            ).rows
        )
        missing = set(spec.model.model_fields) - set(columns)
        assert not missing, f"{spec.name} lacks columns for {sorted(missing)}"
        extra = set(columns) - set(spec.model.model_fields)
        expected = {"ingested_at"} | set(spec.columns[len(spec.model.model_fields) :])
        assert extra == expected, f"{spec.name} has unexpected columns {sorted(extra)}"
        for name, info in spec.model.model_fields.items():
            nullable, _ = _base_type(info.annotation)
            assert ("Nullable(" in columns[name]) == nullable, (
                f"{spec.name}.{name}: column {columns[name]} vs field {info.annotation}"
            )


@pytest.mark.integration
def test_the_1d_rollups_keep_their_own_retention(clickhouse: ClickHouseBackend) -> None:
    migrate(clickhouse, settings())
    full = dict(
        clickhouse.query(
            "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()"
        ).rows
    )
    assert f"toIntervalDay({settings().retention.rollups_1d_days})" in full["rollups_1d"]
    report = migrate(clickhouse, settings(rollups_1d_days=11))
    assert report.retention_updated == ["rollups_1d"]
    full = dict(
        clickhouse.query(
            "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()"
        ).rows
    )
    assert "toIntervalDay(11)" in full["rollups_1d"]
    assert "toIntervalDay(11)" not in full["rollups_1h"]
