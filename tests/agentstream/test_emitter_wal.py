"""``durability = "disk"``: the write-ahead log's bookkeeping (no broker needed here).

The producer points at a closed port, so every delivery fails as when the broker
is away: each logged event must then move to the ordinary spool before its log
entry is retired, and nothing may be left in the log at close.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from agentstream import Emitter, ToolCall, run_context
from agentstream.core.config import Settings, load_settings
from agentstream.core.errors import ConfigError
from agentstream.devtools.localstack import free_ports
from agentstream.emitter._frames import read_frames
from agentstream.emitter._spool import Spool
from agentstream.schemas import decode_model
from tests.support.wait import wait_until

#: upper bound on any wait below (a bound, not a measured threshold)
WAIT_S = 60.0


_wait_until = partial(wait_until, timeout_s=WAIT_S, poll_s=0.01)


def _settings(spool_dir: Path, **emitter: object) -> Settings:
    [port] = free_ports("127.0.0.1", 1)  # nothing listens there
    return load_settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{port}"},
        topics={"prefix": "waltest."},
        emitter={
            "spool_dir": spool_dir,
            "durability": "disk",
            "delivery_timeout_ms": 60_000,
            **emitter,
        },
    )


def _wal_records(spool_dir: Path) -> list[ToolCall]:
    return [
        decode_model(record.value, ToolCall)
        for path in sorted(spool_dir.glob("wal-seg-*.spool"))
        for record in read_frames(path.read_bytes())[0]
    ]


def test_each_event_is_in_the_log_when_emit_returns(tmp_path: Path) -> None:
    emitter = Emitter(_settings(tmp_path / "spool"))
    try:
        with run_context(tenant_id="t", agent_id="a", run_id="r"):
            sent = [
                emitter.emit(ToolCall, tool=f"t{i}", status="SUCCESS", latency_ms=i)
                for i in range(20)
            ]
            # read straight from the file, as a process replaying after a crash would
            assert [e.event_id for e in _wal_records(tmp_path / "spool")] == [
                e.event_id for e in sent
            ]
            # the live log is locked: neither waiting nor claimable by a replay
            assert Spool(tmp_path / "spool").claim() == []
            assert not emitter.spool.has_waiting()
    finally:
        emitter.close(0)
    # at close the queued events went to the spool; their log entries were retired
    assert list((tmp_path / "spool").glob("wal-*")) == []
    spooled = [
        decode_model(r.value, ToolCall)
        for p in Spool(tmp_path / "spool").segment_paths()
        for r in Spool.read(p)
    ]
    assert [e.event_id for e in spooled] == [e.event_id for e in sent]
    assert emitter.stats().lost == 0


def test_a_failed_delivery_moves_from_the_log_to_the_spool(tmp_path: Path) -> None:
    emitter = Emitter(_settings(tmp_path / "spool", delivery_timeout_ms=500))
    try:
        with run_context(tenant_id="t", agent_id="a", run_id="r"):
            for i in range(10):
                emitter.emit(ToolCall, tool=f"t{i}", status="SUCCESS", latency_ms=i)
        _wait_until(lambda: emitter.stats().spooled == 10, "the failures to be spooled")
        # settled (spooled) entries leave the log: it is cut back to its header
        _wait_until(lambda: _wal_records(tmp_path / "spool") == [], "the log to be cut back")
    finally:
        emitter.close(0)
    assert list((tmp_path / "spool").glob("wal-*")) == []


def test_fsync_interval_0_syncs_before_emit_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitter = Emitter(_settings(tmp_path / "spool", wal_fsync_interval_ms=0))
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    try:
        with run_context(tenant_id="t", agent_id="a", run_id="r"):
            emitter.emit(ToolCall, tool="first", status="SUCCESS", latency_ms=1.0)  # creates it
            monkeypatch.setattr(os, "fsync", fsync)
            for i in range(5):
                before = len(synced)
                emitter.emit(ToolCall, tool=f"t{i}", status="SUCCESS", latency_ms=i)
                assert len(synced) > before  # this emit's entry was fsynced before it returned
    finally:
        monkeypatch.undo()
        emitter.close(0)


def test_durability_is_validated_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="AGENTSTREAM_EMITTER__DURABILITY"):
        load_settings(emitter={"durability": "paper"})
    with pytest.raises(ConfigError, match="AGENTSTREAM_EMITTER__WAL_FSYNC_INTERVAL_MS"):
        load_settings(emitter={"wal_fsync_interval_ms": -1})
