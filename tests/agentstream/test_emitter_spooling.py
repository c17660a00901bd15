"""The Emitter with no broker to talk to: everything lands in the spool, nothing blocks.

A real librdkafka producer is pointed at a closed port, so deliveries fail the way
they do when the broker is away (message timed out). No broker is needed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from agentstream import Emitter, EventValidationError, ToolCall, run_context
from agentstream.core.config import Settings, load_settings
from agentstream.devtools.localstack import free_ports
from agentstream.emitter._spool import Spool
from agentstream.schemas import decode_model
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
#: upper bound on any wait below (a bound, not a measured threshold)
WAIT_S = 60.0


_wait_until = partial(wait_until, timeout_s=WAIT_S, poll_s=0.02)


def _settings(spool_dir: Path, **emitter: object) -> Settings:
    [port] = free_ports("127.0.0.1", 1)  # nothing listens there
    return load_settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{port}"},
        topics={"prefix": "spooltest."},
        emitter={
            "spool_dir": spool_dir,
            "delivery_timeout_ms": 1000,
            "replay_interval_s": 0.2,
            **emitter,
        },
    )


@pytest.fixture
def emitter(tmp_path: Path) -> Iterator[Emitter]:
    emitter = Emitter(_settings(tmp_path / "spool"))
    yield emitter
    emitter.close(0)


def _spooled_events(spool_dir: Path) -> list[ToolCall]:
    spool = Spool(spool_dir)
    return [
        decode_model(record.value, ToolCall)
        for path in spool.segment_paths()
        for record in Spool.read(path)
    ]


def test_undeliverable_events_are_spooled_then_diverted(emitter: Emitter, tmp_path: Path) -> None:
    sent = []
    for run in range(5):
        with run_context(tenant_id="t", agent_id="a", run_id=f"run-{run}"):
            for i in range(10):
                sent.append(emitter.emit(ToolCall, tool=f"t{i}", status="SUCCESS", latency_ms=i))
    assert emitter.flush(WAIT_S) == 0  # done = delivered or durably spooled
    stats = emitter.stats()
    assert (stats.emitted, stats.failed, stats.spooled, stats.delivered) == (50, 50, 50, 0)
    assert stats.diverting
    assert stats.lost == 0
    # while the broker is away, new events go straight to the spool
    with run_context(tenant_id="t", agent_id="a", run_id="run-late"):
        late = [emitter.emit(ToolCall, tool="late", status="SUCCESS", latency_ms=1.0)]
    assert emitter.flush(WAIT_S) == 0
    stats = emitter.stats()
    assert (stats.emitted, stats.failed, stats.spooled) == (51, 50, 51)
    emitter.close(0)
    on_disk = _spooled_events(tmp_path / "spool")
    assert sorted(e.event_id for e in on_disk) == sorted(e.event_id for e in sent + late)
    for run in range(5):  # each run's events stay in order
        expected = [e.event_id for e in sent if e.run_id == f"run-{run}"]
        assert [e.event_id for e in on_disk if e.run_id == f"run-{run}"] == expected
    assert on_disk[-1].event_id == late[0].event_id


def test_a_full_local_queue_spools_at_once(tmp_path: Path) -> None:
    emitter = Emitter(
        _settings(tmp_path / "spool", queue_max_messages=5, delivery_timeout_ms=30_000)
    )
    try:
        with run_context(tenant_id="t", agent_id="a"):
            for i in range(20):
                emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=i)
        # the 15 that did not fit are written long before the 30 s delivery timeout
        _wait_until(lambda: emitter.stats().spooled >= 15, "the overflow to be spooled")
        stats = emitter.stats()
        assert (stats.emitted, stats.spooled, stats.queued) == (20, 15, 5)
    finally:
        emitter.close(0)
    # close() spools what was still queued: nothing is lost
    stats = emitter.stats()
    assert (stats.spooled, stats.lost, stats.queued) == (20, 0, 0)
    assert len(_spooled_events(tmp_path / "spool")) == 20


def test_emit_after_close_is_refused(emitter: Emitter) -> None:
    emitter.close(0)
    with run_context(tenant_id="t", agent_id="a"), pytest.raises(Exception, match="closed"):
        emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0)


def test_a_full_disk_is_loud_and_counted(tmp_path: Path) -> None:
    [port] = free_ports("127.0.0.1", 1)
    code = """
        import logging, resource, signal, sys
        from agentstream import Emitter, ToolCall, run_context
        from agentstream.core.config import load_settings
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))  # a tiny "disk"
        settings = load_settings(
            kafka={"bootstrap_servers": sys.argv[2]},
            emitter={"spool_dir": sys.argv[1], "delivery_timeout_ms": 1000},
        )
        emitter = Emitter(settings)
        with run_context(tenant_id="t", agent_id="a"):
            for i in range(200):
                emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0,
                             params={"blob": "b" * 1000, "i": i})
        emitter.flush(30)
        emitter.close(0)
        s = emitter.stats()
        print(s.emitted, s.spooled, s.lost)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path / "spool"), f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    emitted, spooled, lost = map(int, result.stdout.split())
    assert emitted == 200
    assert lost > 0
    assert spooled + lost == 200
    assert "CRITICAL:agentstream.emitter" in result.stderr
    assert "EVENTS LOST" in result.stderr
    # what was spooled is intact and readable
    assert len(_spooled_events(tmp_path / "spool")) == spooled


def test_events_still_queued_at_interpreter_exit_are_spooled(tmp_path: Path) -> None:
    [port] = free_ports("127.0.0.1", 1)
    code = """
        import sys
        from agentstream import Emitter, ToolCall, run_context
        from agentstream.core.config import load_settings
        settings = load_settings(
            kafka={"bootstrap_servers": sys.argv[2]},
            emitter={"spool_dir": sys.argv[1], "delivery_timeout_ms": 600000,
                     "flush_at_exit_s": 0.5},
        )
        emitter = Emitter(settings)
        with run_context(tenant_id="t", agent_id="a", run_id="at-exit"):
            for i in range(10):
                event = emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=i)
                print(event.event_id)
        # no flush, no close: the atexit hook must keep the events
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path / "spool"), f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    emitted = result.stdout.split()
    assert len(emitted) == 10
    assert [e.event_id for e in _spooled_events(tmp_path / "spool")] == emitted


def test_the_kafka_emitter_refuses_bad_events_at_the_call_site(tmp_path: Path) -> None:
    emitter = Emitter(_settings(tmp_path / "spool", max_event_bytes=2048))
    try:
        bad: list[tuple[dict[str, object], str]] = [
            ({"status": "UNKNOWN"}, "ToolCall.status"),
            ({"latency_ms": -5.0}, "ToolCall.latency_ms"),
            ({"params": {"blob": "x" * 5000}}, "ToolCall.params"),
        ]
        with run_context(tenant_id="t", agent_id="a"):
            for fields, field in bad:
                values = {"tool": "x", "status": "SUCCESS", "latency_ms": 1.0, **fields}
                with pytest.raises(EventValidationError) as info:
                    emitter.emit(ToolCall, **values)
                assert info.value.fields == (field,)
        with pytest.raises(EventValidationError) as missing:
            emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0)
        assert "ToolCall.run_id" in missing.value.fields
        assert emitter.stats().emitted == 0
    finally:
        emitter.close(0)
