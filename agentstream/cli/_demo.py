"""``agentstream demo``: the whole path on one machine, with a scripted incident.

Starts the local broker (unless one already answers), a worker in a child
process, simulated agents through the real Emitter with an error-rate spike on
one tool and a latency spike on one agent version, shows a live view of
throughput, rollups and alerts, then stops the worker and prints a summary
from ClickHouse. Everything it started is stopped again, also on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstream.core.config import Settings, load_settings, settings_env
from agentstream.core.errors import AgentstreamError

#: "run <id> has no INIT" reasons, grouped as one in the live view and the summary
_NO_INIT = r"^run \S+ has no INIT"
_NO_INIT_SQL = _NO_INIT.replace("\\", "\\\\")  # inside a ClickHouse string literal

__all__ = ["DemoOptions", "run_demo"]

_TERM_GRACE_S = 20.0


@dataclass(frozen=True)
class DemoOptions:
    """Knobs of the demo; the defaults tell the story in about a minute."""

    duration_s: float = 45.0
    runs_per_s: float = 40.0
    seed: int = 7
    incident_tool: str = "web_search"
    incident_version: str = "1.1.0"
    settle_s: float = 10.0
    home: Path = Path(".local/demo")


@dataclass
class _Live:
    """What the live view shows, fed by a consumer of the processors' outputs."""

    rollups: deque[Any] = field(default_factory=lambda: deque(maxlen=1))
    alerts: list[Any] = field(default_factory=list)
    invalid: Counter[str] = field(default_factory=Counter)
    rollups_seen: int = 0
    sent: int = 0
    started: float = field(default_factory=time.monotonic)
    #: the worker's own figures, from its /metrics page (see :func:`pipeline_figures`)
    pipeline: dict[str, float] = field(default_factory=dict)


def pipeline_figures(page: str) -> dict[str, float]:
    """The worker's progress from its Prometheus page: records processed, processor lag,
    rows stored, mean sink batch time (ms)."""
    from prometheus_client.parser import text_string_to_metric_families

    figures = dict.fromkeys(("processed", "lag", "stored", "batch_ms"), 0.0)
    batch_sum = batch_count = 0.0
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "agentstream_events_consumed_total":
                if labels.get("stage") == "processors":
                    figures["processed"] += sample.value
            elif sample.name == "agentstream_consumer_lag":
                if labels.get("consumer_group", "").endswith("-processors"):
                    figures["lag"] += sample.value
            elif sample.name == "agentstream_sink_rows_total":
                figures["stored"] += sample.value
            elif sample.name == "agentstream_sink_batch_duration_seconds_sum":
                batch_sum += sample.value
            elif sample.name == "agentstream_sink_batch_duration_seconds_count":
                batch_count += sample.value
    figures["batch_ms"] = 1000 * batch_sum / batch_count if batch_count else 0.0
    return figures


def _scrape(url: str, live: _Live, stop: threading.Event) -> None:
    """Read the worker's /metrics every second for the live view."""
    import urllib.request

    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (http, built here)
                live.pipeline = pipeline_figures(response.read().decode())
        except OSError:
            continue  # the worker is busy or restarting: keep the last figures


def _watch(settings: Settings, live: _Live, stop: threading.Event) -> None:
    """Consume rollups, alerts and dead letters for the live view."""
    from agentstream.core import kafka
    from agentstream.core.codec import codec_from_settings
    from agentstream.schemas import Alert, InvalidEvent, Rollup

    codec = codec_from_settings(settings, role="consumer")

    topics = {settings.topics.name(s): s for s in ("rollups", "alerts", "invalid")}
    consumer = kafka.consumer(settings, "tools", {"group.id": f"demo-view-{os.getpid()}"})
    consumer.subscribe(list(topics))
    try:
        while not stop.is_set():
            for message in consumer.consume(500, 0.25):
                value = message.value()
                if message.error() or value is None:
                    continue
                try:
                    record = codec.decode_model(value)
                except AgentstreamError:
                    continue
                if isinstance(record, Rollup):
                    live.rollups_seen += 1
                    if record.resolution == "1s" and record.scope_key == "global":
                        live.rollups.append(record)
                elif isinstance(record, Alert):
                    live.alerts.append(record)
                elif isinstance(record, InvalidEvent):
                    reason = re.sub(_NO_INIT, "run has no INIT", record.reason)
                    live.invalid[reason.split(":")[0][:60]] += 1
    finally:
        consumer.close()


def _view(live: _Live) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    elapsed = max(1e-9, time.monotonic() - live.started)
    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"[bold]events sent[/] {live.sent:,}",
        f"[bold]rate[/] {live.sent / elapsed:,.0f}/s",
        f"[bold]rollups[/] {live.rollups_seen:,}",
        f"[bold]dead letters[/] {sum(live.invalid.values()):,}",
    )
    worker = live.pipeline
    if worker:
        head.add_row(
            f"[bold]processed[/] {worker['processed']:,.0f}",
            f"[bold]lag[/] {worker['lag']:,.0f}",
            f"[bold]rows stored[/] {worker['stored']:,.0f}",
            f"[bold]batch[/] {worker['batch_ms']:,.1f} ms",
        )
    rollup = live.rollups[-1] if live.rollups else None
    figures = Table(title="last closed 1 s window (global)", expand=True)
    for column in ("window", "calls", "errors", "error rate", "p50 ms", "p95 ms", "p99 ms"):
        figures.add_column(column, justify="right")
    if rollup is not None:
        rate = rollup.error / rollup.count if rollup.count else 0.0
        figures.add_row(
            rollup.window_start.strftime("%H:%M:%S"),
            str(rollup.count),
            str(rollup.error),
            f"{rate:.1%}",
            *(
                f"{v:,.0f}" if v is not None else "-"
                for v in (rollup.latency_p50, rollup.latency_p95, rollup.latency_p99)
            ),
        )
    alerts = Table(title="alerts", expand=True)
    for column in ("state", "rule", "scope", "value", "window"):
        alerts.add_column(column)
    for alert in live.alerts[-8:]:
        colour = "red" if alert.state.value == "FIRING" else "green"
        alerts.add_row(
            f"[{colour}]{alert.state.value}[/]",
            alert.rule_id,
            alert.scope_key,
            f"{alert.value:,.3g}",
            alert.window_end.strftime("%H:%M:%S"),
        )
    invalid = Table(title="rejected transitions (dead letters)", expand=True)
    invalid.add_column("reason")
    invalid.add_column("count", justify="right")
    for reason, count in live.invalid.most_common(5):
        invalid.add_row(reason, str(count))
    return Panel(Group(head, figures, alerts, invalid), title="agentstream demo")


@contextmanager
def _broker(settings: Settings, console: Any) -> Iterator[str]:
    """The configured broker if it answers, else a local one started (and stopped) here."""
    from agentstream.devtools.localstack import LocalKafka, broker_answers

    if broker_answers(settings.kafka.bootstrap_servers, timeout_s=2.0):
        console.print(f"using the broker at {settings.kafka.bootstrap_servers}")
        yield settings.kafka.bootstrap_servers
        return
    local = LocalKafka(settings.local_kafka)
    with console.status("starting the local Kafka broker"):
        result = local.start()
    console.print(f"[green]✓[/] Kafka {settings.local_kafka.version} at {result.bootstrap}")
    try:
        yield result.bootstrap
    finally:
        if result.started:
            with console.status("stopping the local Kafka broker"):
                local.stop()


@contextmanager
def _worker(env: dict[str, str], log: Path, console: Any) -> Iterator[subprocess.Popen[bytes]]:
    """``agentstream worker`` in a child process, stopped with SIGTERM (SIGKILL after a grace)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentstream", "worker"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                with console.status("stopping the worker"):
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(_TERM_GRACE_S)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], marker: Path, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise AgentstreamError("the worker exited at start:\n" + "\n".join(tail))
        if marker.exists():
            return
        time.sleep(0.25)
    raise AgentstreamError(f"the worker was not ready after {timeout:.0f}s (log: {log})")


def run_demo(options: DemoOptions) -> int:
    """Run the demo; returns the exit code."""
    from rich.console import Console
    from rich.live import Live

    from agentstream import Emitter
    from agentstream.core.topics import ensure_topics
    from agentstream.devtools.localstack._system import free_ports
    from agentstream.devtools.simulate import Incident, Simulation, SimulationConfig

    console = Console()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    home = options.home.resolve() / run_id
    from agentstream.processors import alerts

    rules = Path(alerts.__file__).resolve().parent / "demo_rules.yaml"
    ready = home / "worker.ready"
    overrides: dict[str, dict[str, Any]] = {
        "topics": {"prefix": f"demo-{run_id}."},
        "clickhouse": {"path": home / "chdb"},
        "emitter": {"spool_dir": home / "spool"},
        "lifecycle": {"reviewing_budget_s": 8, "executing_budget_s": 60},
        "rollups": {"allowed_lateness_s": 2},
        "alerts": {"rules_path": rules},
        # the demo's rollouts are judged on 1 s windows: stages of seconds, not hours
        "rollouts": {"resolution": "1s", "channels": ["log"]},
        "review": {"sample_rate": 0.01},
        "worker": {
            "app_id": f"agentstream-demo-{run_id}",
            "web_port": free_ports("127.0.0.1", 1)[0],
            "data_dir": home / "worker",
            "ready_file": ready,
        },
    }
    settings = load_settings(**overrides)
    env = settings_env(overrides)
    incident_at = options.duration_s * 0.25
    simulation = Simulation(
        SimulationConfig(
            tenants=("acme", "globex"),
            tools=("web_search", "sql_query", "book_hotel", "send_email"),
            agents=2,
            runs_per_s=options.runs_per_s,
            duration_s=options.duration_s,
            seed=options.seed,
            incidents=(
                Incident(
                    incident_at, incident_at + 15, tool=options.incident_tool, error_rate=0.45
                ),
                Incident(
                    incident_at + 20,
                    incident_at + 32,
                    agent_version=options.incident_version,
                    latency_factor=40,
                ),
            ),
        )
    )
    with _broker(settings, console) as bootstrap:
        settings = load_settings(**overrides, kafka={"bootstrap_servers": bootstrap})
        env |= settings_env({"kafka": {"bootstrap_servers": bootstrap}})
        ensure_topics(
            bootstrap, settings.topics.all().values(), partitions=settings.kafka.partitions
        )
        log = home / "worker.log"
        with _worker(env, log, console) as proc:
            with console.status("starting the worker (processors, ClickHouse sink, alerts)"):
                _wait_ready(proc, ready, log, timeout=120)
            console.print(f"[green]✓[/] worker running (log: {log})")
            _start_rollouts(settings, options, console)
            live = _Live()
            stop = threading.Event()
            watcher = threading.Thread(target=_watch, args=(settings, live, stop), daemon=True)
            watcher.start()
            metrics_url = f"http://127.0.0.1:{settings.worker.web_port}/metrics"
            scraper = threading.Thread(target=_scrape, args=(metrics_url, live, stop), daemon=True)
            scraper.start()
            emitter = Emitter(settings)
            report = None
            try:
                with Live(_view(live), console=console, refresh_per_second=4) as screen:

                    def emit(event: Any) -> None:
                        emitter.emit(event)
                        live.sent += 1

                    def progress(_: Any) -> None:
                        screen.update(_view(live))

                    report = simulation.run(emit, on_progress=progress)
                    emitter.flush(30)
                    settle_until = time.monotonic() + options.settle_s
                    while time.monotonic() < settle_until:
                        time.sleep(0.25)
                        screen.update(_view(live))
            finally:
                emitter.close()
                stop.set()
                watcher.join(5)
                scraper.join(5)
    _summary(settings, console, report)
    return 0


def demo_rollouts(options: DemoOptions) -> list[Any]:
    """Two canaries of the incident version against the other one: ``agent-2`` with short
    stages (promoted through every stage before the incident), ``agent-1`` with longer ones
    (still rolling out when the incident version slows down: rolled back)."""
    from agentstream.schemas import Rollout

    baseline = "1.0.0" if options.incident_version != "1.0.0" else "1.1.0"
    quick = max(2.0, options.duration_s * 0.1)
    slow = max(quick * 2, options.duration_s * 0.22)
    return [
        Rollout(
            agent_id=agent,
            baseline=baseline,
            candidate=options.incident_version,
            stages=(5, 10, 25, 50, 100),
            min_stage_s=stage_s,
            guards=("error_rate <= +10pp", "p50_latency <= +100%"),
            min_runs=20,
            created_by="demo",
        )
        for agent, stage_s in (("agent-2", quick), ("agent-1", slow))
    ]


def _start_rollouts(settings: Settings, options: DemoOptions, console: Any) -> None:
    from agentstream.core import kafka
    from agentstream.schemas import encode_model

    producer = kafka.producer(settings, "tools")
    for r in demo_rollouts(options):
        producer.produce(settings.topics.name("rollouts"), encode_model(r), r.agent_id.encode())
        console.print(
            f"[green]✓[/] rollout {r.agent_id}: {r.baseline} -> {r.candidate}, stages "
            f"{','.join(map(str, r.stages))}%, {r.min_stage_s:g} s each"
        )
    producer.flush(30)


def _summary(settings: Settings, console: Any, report: Any) -> None:
    from rich.table import Table

    from agentstream.sinks.clickhouse import open_backend

    console.print()  # past the live view's last frame
    backend = open_backend(settings.clickhouse)
    try:
        queries = {
            "top tools": (
                "SELECT tool, count() AS calls, countIf(status = 'ERROR') AS errors, "
                "round(errors / calls, 3) AS error_rate FROM tool_calls FINAL "
                "GROUP BY tool ORDER BY calls DESC LIMIT 10"
            ),
            "p95 latency per agent version": (
                "SELECT agent_version, count() AS calls, "
                "round(quantile(0.5)(latency_ms)) AS p50_ms, "
                "round(quantile(0.95)(latency_ms)) AS p95_ms FROM tool_calls FINAL "
                "GROUP BY agent_version ORDER BY agent_version"
            ),
            "alerts": (
                "SELECT rule_id, scope_key, countIf(state = 'FIRING') AS fired, "
                "countIf(state = 'RESOLVED') AS resolved FROM alerts FINAL "
                "GROUP BY rule_id, scope_key ORDER BY rule_id, scope_key"
            ),
            "invalid runs by reason": (
                "SELECT replaceRegexpOne(reason, "
                f"'{_NO_INIT_SQL}', 'run has no INIT') "
                "AS why, count() AS events FROM invalid_events FINAL "
                "GROUP BY why ORDER BY events DESC LIMIT 10"
            ),
            "rollout verdicts": (
                "SELECT agent_id, verdict, stage_percent, next_percent, "
                "substring(reason, 1, 90) AS why FROM rollouts FINAL "
                "WHERE verdict != 'HOLD' ORDER BY agent_id, decided_at"
            ),
            "review queue (1 % of finished runs, plus rules)": (
                "SELECT (SELECT count() FROM review_queue FINAL) AS requested, "
                "(SELECT count() FROM state_transitions FINAL "
                "WHERE to_state IN ('COMPLETED', 'FAILED')) AS finished_runs, "
                "round(requested / finished_runs, 4) AS share"
            ),
            "runs": (
                "SELECT to_state, count() AS runs, "
                "countIf(error_category = 'TIMEOUT') AS timeouts FROM state_transitions FINAL "
                "WHERE to_state IN ('COMPLETED', 'FAILED') GROUP BY to_state"
            ),
        }
        for title, sql in queries.items():
            result = backend.query(sql)
            table = Table(title=title)
            for column in result.columns:
                table.add_column(column)
            for row in result.rows:
                table.add_row(*(str(value) for value in row))
            console.print(table)
    finally:
        backend.close()
    if report is not None:
        console.print(
            f"sent {report.total:,} events from {report.runs:,} runs in {report.elapsed_s:.0f}s; "
            f"injected {sum(report.invalid.values())} invalid runs, {report.stalled} stalled, "
            f"{report.overrides} human overrides"
        )
