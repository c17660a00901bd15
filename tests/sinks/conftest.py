"""Database fixtures: the real ClickHouse engine (chdb) in a temporary folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentstream.config import ClickHouseSettings
from sinks.clickhouse import ClickHouseBackend, open_backend


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded data folder per test session (chdb holds one folder per process)."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def clickhouse(chdb_path: Path) -> Iterator[ClickHouseBackend]:
    """The embedded engine with a fresh database for this test."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    try:
        yield backend
    finally:
        backend.command(f"DROP DATABASE IF EXISTS {database}")
        backend.close()
