"""Versioned migrations: ``sinks/migrations/NNNN_name.sql``, rendered from the settings.

A migration file holds statements that each end with ``;`` at the end of a line
and are idempotent (``IF NOT EXISTS``), so a run interrupted half-way is simply
run again. Lines starting with ``--`` are comments. ``{{macro args}}`` are
rendered from :class:`~agentstream.core.config.RetentionSettings` and
:class:`~agentstream.core.config.SinkSettings`:

``{{ttl_by_retention COL}}``
    ``TTL toDateTime(COL) + INTERVAL <business_days> DAY DELETE WHERE retention = 'BUSINESS',
    toDateTime(COL) + INTERVAL <legal_days> DAY DELETE WHERE retention = 'LEGAL'``
    (one clause per :class:`schemas` ``Retention`` class) plus the cold move.
``{{ttl_after COL FIELD}}``
    ``TTL toDateTime(COL) + INTERVAL <retention.FIELD> DAY DELETE`` plus the cold move.
``{{table_settings}}``
    ``SETTINGS non_replicated_deduplication_window = <sink.dedup_window>`` and
    ``storage_policy`` when configured.

The cold move (``, toDateTime(COL) + INTERVAL <cold_after_days> DAY TO VOLUME '<cold_volume>'``)
is added only when ``retention.cold_volume`` is set.

Applied migrations are recorded in ``schema_migrations`` (kind ``migration``,
with the checksum of the file); a file changed after it was applied is an
error. The rendered TTL and settings of each table are recorded too (kind
``retention``): when the settings change, the next run applies them with
``ALTER TABLE ... MODIFY TTL / MODIFY SETTING``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from agentstream.core.config import RetentionSettings, Settings, SinkSettings
from agentstream.core.errors import ConfigError, StorageError
from agentstream.schemas import Retention
from agentstream.sinks.clickhouse._backend import ClickHouseBackend

__all__ = [
    "Migration",
    "MigrationReport",
    "TableRetention",
    "load_migrations",
    "migrate",
    "render",
    "split_statements",
]

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MACRO = re.compile(r"\{\{\s*(\w+)((?:\s+\w+)*)\s*\}\}")
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

_BOOTSTRAP = """CREATE TABLE IF NOT EXISTS schema_migrations
(
    kind       LowCardinality(String),
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (kind, version, name, applied_at)"""


@dataclass(frozen=True)
class Migration:
    """One migration file: its version, name, template text and checksum."""

    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        """sha256 of the template (rendering values do not change it)."""
        return hashlib.sha256(self.text.replace("\r\n", "\n").encode()).hexdigest()


@dataclass(frozen=True)
class TableRetention:
    """The rendered TTL and settings clauses of one table."""

    table: str
    ttl: str
    settings: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.ttl}\n{self.settings}".encode()).hexdigest()


@dataclass
class MigrationReport:
    """What a :func:`migrate` run did."""

    applied: list[int] = field(default_factory=list)
    already_applied: list[int] = field(default_factory=list)
    #: tables whose TTL / settings were (re)recorded, altered when they existed before
    retention_updated: list[str] = field(default_factory=list)


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migration files in version order (the packaged ``sinks/migrations`` by default)."""
    files: list[tuple[str, str]] = []
    if directory is None:
        root = resources.files("agentstream.sinks").joinpath("migrations")
        files = [(e.name, e.read_text("utf-8")) for e in root.iterdir() if e.name.endswith(".sql")]
    else:
        files = [(p.name, p.read_text("utf-8")) for p in sorted(directory.glob("*.sql"))]
    migrations: list[Migration] = []
    seen: dict[int, str] = {}
    for file_name, text in files:
        match = _FILE_NAME.match(file_name)
        if match is None:
            raise StorageError(f"migration file {file_name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in seen:
            raise StorageError(
                f"migrations {seen[version]} and {file_name} share version {version}"
            )
        seen[version] = file_name
        migrations.append(Migration(version, match.group(2), text))
    return sorted(migrations, key=lambda m: m.version)


def split_statements(text: str) -> list[str]:
    """The statements of a migration file (comment lines dropped)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    body = "\n".join(lines)
    return [part.strip() for part in _STATEMENT_END.split(body) if part.strip()]


def _quoted_name(value: str, setting: str) -> str:
    if not _NAME.match(value):
        raise ConfigError(f"{setting}: {value!r} is not a valid volume/policy name")
    return f"'{value}'"


def _days(retention: RetentionSettings, field_name: str) -> int:
    if field_name not in RetentionSettings.model_fields or not field_name.endswith("_days"):
        raise StorageError(f"migration macro names unknown retention setting {field_name!r}")
    days = getattr(retention, field_name)
    if not isinstance(days, int):  # pragma: no cover - the settings model guarantees it
        raise StorageError(f"retention setting {field_name!r} is not a day count")
    return days


class _Renderer:
    def __init__(self, retention: RetentionSettings, sink: SinkSettings) -> None:
        self.retention = retention
        self.sink = sink

    def _cold(self, column: str) -> str:
        if self.retention.cold_volume is None:
            return ""
        volume = _quoted_name(self.retention.cold_volume, "AGENTSTREAM_RETENTION__COLD_VOLUME")
        return (
            f", toDateTime({column}) + INTERVAL {self.retention.cold_after_days} DAY "
            f"TO VOLUME {volume}"
        )

    def ttl_by_retention(self, column: str) -> str:
        clauses = [
            f"toDateTime({column}) + INTERVAL "
            f"{_days(self.retention, f'{cls.value.lower()}_days')} DAY "
            f"DELETE WHERE retention = '{cls.value}'"
            for cls in Retention
        ]
        return "TTL " + ", ".join(clauses) + self._cold(column)

    def ttl_after(self, column: str, days_field: str) -> str:
        days = _days(self.retention, days_field)
        return f"TTL toDateTime({column}) + INTERVAL {days} DAY DELETE" + self._cold(column)

    def table_settings(self) -> str:
        parts = [f"non_replicated_deduplication_window = {self.sink.dedup_window}"]
        if self.retention.storage_policy is not None:
            policy = _quoted_name(
                self.retention.storage_policy, "AGENTSTREAM_RETENTION__STORAGE_POLICY"
            )
            parts.append(f"storage_policy = {policy}")
        return "SETTINGS " + ", ".join(parts)

    def expand(self, match: re.Match[str]) -> str:
        name, args = match.group(1), match.group(2).split()
        if name == "ttl_by_retention" and len(args) == 1:
            return self.ttl_by_retention(args[0])
        if name == "ttl_after" and len(args) == 2:
            return self.ttl_after(args[0], args[1])
        if name == "table_settings" and not args:
            return self.table_settings()
        raise StorageError(f"unknown migration macro {match.group(0)!r}")


def render(text: str, retention: RetentionSettings, sink: SinkSettings) -> str:
    """``text`` with every ``{{macro}}`` rendered from the settings."""
    return _MACRO.sub(_Renderer(retention, sink).expand, text)


def table_retention(
    migrations: Sequence[Migration], retention: RetentionSettings, sink: SinkSettings
) -> dict[str, TableRetention]:
    """The rendered TTL and settings of each table the migrations create."""
    renderer = _Renderer(retention, sink)
    tables: dict[str, TableRetention] = {}
    for migration in migrations:
        for statement in split_statements(migration.text):
            created = _CREATE_TABLE.match(statement)
            if created is None:
                continue
            ttl = settings = ""
            for match in _MACRO.finditer(statement):
                rendered = renderer.expand(match)
                if rendered.startswith("TTL "):
                    ttl = rendered
                elif rendered.startswith("SETTINGS "):
                    settings = rendered
            tables[created.group(1)] = TableRetention(created.group(1), ttl, settings)
    return tables


def _recorded(backend: ClickHouseBackend, kind: str) -> dict[str, str]:
    """``name`` → latest checksum of ``kind`` rows in schema_migrations."""
    result = backend.query(
        "SELECT name, argMax(checksum, applied_at) FROM schema_migrations "
        "WHERE kind = {kind:String} GROUP BY name",
        {"kind": kind},
    )
    return {str(name): str(checksum) for name, checksum in result.rows}


def _record(backend: ClickHouseBackend, kind: str, version: int, name: str, checksum: str) -> None:
    backend.insert(
        "schema_migrations",
        ["kind", "version", "name", "checksum"],
        [(kind, version, name, checksum)],
    )


def migrate(
    backend: ClickHouseBackend,
    settings: Settings,
    *,
    migrations: Sequence[Migration] | None = None,
) -> MigrationReport:
    """Apply pending migrations and current retention settings; safe to run any number of times."""
    chosen = list(migrations) if migrations is not None else load_migrations()
    report = MigrationReport()
    backend.command(_BOOTSTRAP)
    applied = _recorded(backend, "migration")
    for migration in chosen:
        key = f"{migration.version:04d}_{migration.name}"
        if key in applied:
            if applied[key] != migration.checksum:
                raise StorageError(
                    f"migration {key} changed after it was applied; add a new migration instead"
                )
            report.already_applied.append(migration.version)
            continue
        for statement in split_statements(
            render(migration.text, settings.retention, settings.sink)
        ):
            backend.command(statement)
        _record(backend, "migration", migration.version, key, migration.checksum)
        report.applied.append(migration.version)

    recorded = _recorded(backend, "retention")
    for table, spec in table_retention(chosen, settings.retention, settings.sink).items():
        if recorded.get(table) == spec.fingerprint:
            continue
        if table in recorded:  # created with other values: bring it up to date
            if spec.ttl:
                backend.command(f"ALTER TABLE {table} MODIFY {spec.ttl}")
            if spec.settings:
                backend.command(
                    f"ALTER TABLE {table} MODIFY {spec.settings.replace('SETTINGS', 'SETTING', 1)}"
                )
        _record(backend, "retention", 0, table, spec.fingerprint)
        report.retention_updated.append(table)
    return report
