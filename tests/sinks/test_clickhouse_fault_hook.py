"""The ``clickhouse.fault_file`` test hook: inserts fail while the file exists, nothing else."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agentstream.core.config import ClickHouseSettings
from agentstream.core.errors import StorageError
from agentstream.sinks.clickhouse import is_rejection, open_backend
from agentstream.sinks.clickhouse._faults import FaultInjectingBackend

pytestmark = pytest.mark.integration


def test_inserts_fail_as_an_outage_while_the_fault_file_exists(
    chdb_path: Path, tmp_path: Path
) -> None:
    down = tmp_path / "clickhouse.down"
    database = f"t_{uuid.uuid4().hex[:12]}"
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=database, fault_file=down))
    try:
        assert isinstance(backend, FaultInjectingBackend)
        backend.command("CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x")
        assert backend.insert("t", ["x"], [[1]]) == 1

        down.write_text("down\n")
        with pytest.raises(StorageError, match="unavailable") as failure:
            backend.insert("t", ["x"], [[2]])
        assert not is_rejection(failure.value)  # the sink retries it: an outage, not bad data
        assert backend.query("SELECT count() FROM t").scalar() == 1  # reads still work

        down.unlink()
        assert backend.insert("t", ["x"], [[3]]) == 1
        assert backend.query("SELECT sum(x) FROM t").scalar() == 4
    finally:
        backend.command(f"DROP DATABASE IF EXISTS {database}")
        backend.close()


def test_without_the_setting_the_backend_is_not_wrapped(chdb_path: Path) -> None:
    database = f"t_{uuid.uuid4().hex[:12]}"
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    try:
        assert not isinstance(backend, FaultInjectingBackend)
    finally:
        backend.command(f"DROP DATABASE IF EXISTS {database}")
        backend.close()
