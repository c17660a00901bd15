"""The soak: the real worker, the real broker and the embedded ClickHouse, under faults.

:func:`run_soak` generates a seeded population (:mod:`.population`), starts (or
uses) a broker, emits the backlog, starts ``python -m agentstream worker`` as child
processes, produces the live traffic through the real :class:`~agentstream.Emitter`
in real time while a fault thread injects the chosen faults, produces the late
producer's events and the closing runs, waits for the pipeline to drain, stops the
workers and compares what ClickHouse holds with the truth (:mod:`.truth`,
:mod:`.compare`).

Faults (``--faults``):

``kill``        SIGKILL of a worker at seeded random moments; it is restarted at once
                (with a stable ``worker.instance_id`` when the setting exists)
``broker``      the broker stopped and started again on the same ports (only a broker
                the soak started itself)
``clickhouse``  every insert fails for a while (the ``clickhouse.fault_file`` test hook)
``backlog``     runs emitted before the worker starts, dated before the last full hour
``duplicates``  some messages produced two or three times (same bytes)
``late``        a producer whose runs are dated minutes behind the stream, sent at the end
``clock``       calls dated in years 9999 and 1970: only ``invalid_events`` may hold them

Every wait is on a condition (ready file, broker answering, offsets, rows), never
a fixed sleep; the fault lengths are the only timed intervals.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentstream.core.config import (
    LocalKafkaSettings,
    Settings,
    WorkerSettings,
    load_settings,
    settings_env,
)
from agentstream.core.errors import AgentstreamError
from agentstream.devtools.soak.compare import Row, compare
from agentstream.devtools.soak.population import (
    FAULTS,
    Planned,
    Population,
    PopulationConfig,
    generate,
)
from agentstream.devtools.soak.truth import compute_truth, to_us

__all__ = ["SoakOptions", "SoakResult", "run_soak"]

#: the worker's settings in the soak: short budgets so stalled runs time out within it
LIFECYCLE: dict[str, Any] = {
    "init_budget_s": 10,
    "preparing_budget_s": 10,
    "executing_budget_s": 20,
    "reviewing_budget_s": 20,
    "timeout_grace_s": 2,
    "idle_after_s": 2,
}
ROLLUPS: dict[str, Any] = {"allowed_lateness_s": 3, "idle_after_s": 2}
_INPUTS = ("tool_calls", "model_calls", "transitions", "reviews")
_OUTPUTS = ("lifecycle", "invalid", "rollups", "alerts")
_SINK_INPUTS = ("tool_calls", "model_calls", "reviews")


@dataclass(frozen=True)
class SoakOptions:
    """What to run."""

    duration_s: float = 120.0
    seed: int = 7
    faults: frozenset[str] = frozenset(FAULTS)
    workers: int = 1
    #: an existing broker; None: one started in ``home`` (needed for the broker fault)
    bootstrap: str | None = None
    #: where everything goes; None: a fresh temporary folder (removed unless ``keep``)
    home: Path | None = None
    keep: bool = False
    runs_per_s: float = 3.0
    late_by_s: float = 180.0
    #: nothing stored for this long (and no lag) counts as drained
    quiet_s: float = 10.0
    drain_timeout_s: float = 900.0
    #: where the broker's jars are cached (a soak-started broker)
    local_kafka: LocalKafkaSettings | None = None


@dataclass
class SoakResult:
    """The table's rows and what happened."""

    rows: list[Row]
    elapsed_s: float
    sent: int
    home: Path
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)


@dataclass
class _Status:
    """What the progress display shows (written by several threads)."""

    phase: str = "starting"
    started: float = field(default_factory=time.monotonic)
    planned: int = 0
    sent: int = 0
    kills: int = 0
    crashes: int = 0
    log: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    emitter: dict[str, int] = field(default_factory=dict)

    def note(self, text: str) -> None:
        stamp = time.monotonic() - self.started
        self.log.append(f"{stamp:6.1f}s  {text}")


def _metric(page: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in page.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


class _Worker:
    """One ``agentstream worker`` child process, restartable."""

    def __init__(self, index: int, env: dict[str, str], home: Path, sink: bool) -> None:
        self.index = index
        self.env = env
        self.home = home
        self.sink = sink
        self.ready = home / f"worker-{index}.ready"
        self.log = home / f"worker-{index}.log"
        self.port = int(env["AGENTSTREAM_WORKER__WEB_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.expected_exit = False

    def start(self) -> None:
        self.ready.unlink(missing_ok=True)
        extra = [] if self.sink else ["--no-sink", "--no-alerts"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentstream", "worker", *extra],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.expected_exit = False

    def wait_ready(self, timeout_s: float, status: _Status) -> bool:
        """Until the worker consumes (its ready file); False if it exited meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready.exists():
                return True
            if self.proc is None or self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        status.note(f"worker {self.index} not ready after {timeout_s:.0f}s")
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.expected_exit = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, grace_s: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        self.expected_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def page(self) -> str | None:
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return None


class _Fleet:
    """The workers, restarted when they die unexpectedly (a supervisor)."""

    def __init__(self, workers: list[_Worker], status: _Status) -> None:
        self.workers = workers
        self.status = status
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._supervise, name="soak-supervisor", daemon=True)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        self.thread.start()

    def _supervise(self) -> None:
        while not self.stop_event.wait(0.5):
            for worker in self.workers:
                with worker.lock:
                    proc = worker.proc
                    if proc is None or worker.expected_exit or proc.poll() is None:
                        continue
                    self.status.crashes += 1
                    self.status.note(
                        f"worker {worker.index} exited ({proc.returncode}); restarting it"
                    )
                    worker.start()
                self.stop_event.wait(2.0)  # a worker failing at start is not respawned hot

    def kill(self, index: int) -> None:
        worker = self.workers[index]
        with worker.lock:
            pid = worker.proc.pid if worker.proc else None
            worker.kill()
            self.status.kills += 1
            self.status.note(f"SIGKILL worker {index} (pid {pid}); restarted")
            worker.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        for worker in self.workers:
            with worker.lock:
                code = worker.stop()
            self.status.note(f"worker {worker.index} stopped (exit {code})")


@dataclass(frozen=True)
class _Fault:
    at_s: float
    name: str
    index: int = 0


def _schedule(options: SoakOptions, rng: random.Random) -> list[_Fault]:
    d = options.duration_s
    faults: list[_Fault] = []
    if "kill" in options.faults:
        for _ in range(max(2, round(d / 40))):
            faults.append(
                _Fault(rng.uniform(0.1, 0.85) * d, "kill", rng.randrange(options.workers))
            )
    if "broker" in options.faults:
        faults.append(_Fault(rng.uniform(0.4, 0.6) * d, "broker"))
    if "clickhouse" in options.faults:
        faults.append(_Fault(rng.uniform(0.15, 0.35) * d, "clickhouse"))
    return sorted(faults, key=lambda f: f.at_s)


def _view(status: _Status) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    elapsed = time.monotonic() - status.started
    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"[bold]phase[/] {status.phase}",
        f"[bold]elapsed[/] {elapsed:,.0f}s",
        f"[bold]sent[/] {status.sent:,}/{status.planned:,}",
        f"[bold]kills[/] {status.kills}",
        f"[bold]crashes[/] {status.crashes}",
    )
    e = status.emitter
    if e:
        head.add_row(
            f"[bold]delivered[/] {e.get('delivered', 0):,}",
            f"[bold]spooled[/] {e.get('spooled', 0):,}",
            f"[bold]replayed[/] {e.get('replayed', 0):,}",
            f"[bold]queued[/] {e.get('queued', 0):,}",
            "",
        )
    f = status.figures
    if f:
        head.add_row(
            f"[bold]processed[/] {f.get('processed', 0):,.0f}",
            f"[bold]lag[/] {f.get('lag', 0):,.0f}",
            f"[bold]rows stored[/] {f.get('stored', 0):,.0f}",
            "",
            "",
        )
    log = Table(title="faults and events", expand=True, show_header=False)
    log.add_column("what")
    for line in status.log[-10:]:
        log.add_row(line)
    return Panel(Group(head, log), title="agentstream soak")


class _LiveView:
    """Rendered afresh at every refresh of the live display (rich calls ``__rich__``)."""

    def __init__(self, status: _Status) -> None:
        self.status = status

    def __rich__(self) -> Any:
        return _view(self.status)


@contextmanager
def _broker(options: SoakOptions, home: Path, status: _Status) -> Iterator[tuple[str, Any]]:
    """The broker to use, and the LocalKafka handle when the soak started it."""
    if options.bootstrap is not None:
        yield options.bootstrap, None
        return
    from agentstream.devtools.localstack import LocalKafka, free_ports

    base = options.local_kafka or load_settings().local_kafka
    cache = (base.cache_dir or base.home).expanduser().resolve()
    port, controller = free_ports(base.host, 2)
    local = LocalKafka(
        base.model_copy(
            update={
                "home": home / "kafka",
                "port": port,
                "controller_port": controller,
                "cache_dir": cache,
                # a loaded CI machine: the broker may need more than its usual minute
                "start_timeout_s": max(base.start_timeout_s, 180.0),
            }
        )
    )
    status.note(f"starting a broker on {local.bootstrap}")
    local.start()
    try:
        yield local.bootstrap, local
    finally:
        local.stop()


def _overrides(home: Path, tag: str, bootstrap: str) -> dict[str, dict[str, Any]]:
    return {
        "kafka": {"bootstrap_servers": bootstrap, "partitions": 6},
        "topics": {"prefix": f"soak-{tag}."},
        "lifecycle": dict(LIFECYCLE),
        "rollups": dict(ROLLUPS),
        "sink": {"consumer_group": f"soak-{tag}-sink"},
        "alerts": {"consumer_group": f"soak-{tag}-alerts"},
        "clickhouse": {"path": home / "chdb", "fault_file": home / "clickhouse.down"},
        "emitter": {"spool_dir": home / "spool", "replay_interval_s": 1},
        "worker": {"app_id": f"soak-{tag}", "data_dir": home / "worker"},
    }


def _worker_env(
    overrides: dict[str, dict[str, Any]], home: Path, index: int, tag: str
) -> dict[str, str]:
    from agentstream.devtools.localstack import free_ports

    worker = {
        "web_port": free_ports("127.0.0.1", 1)[0],
        "ready_file": home / f"worker-{index}.ready",
    }
    if "instance_id" in WorkerSettings.model_fields:  # static membership (issue #11 item 1)
        worker["instance_id"] = f"soak-{tag}-{index}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    sections = {**overrides, "worker": {**overrides["worker"], **worker}}
    sections = {k: v for k, v in sections.items() if k != "emitter"}
    return {**env, **settings_env(sections)}


def _group_lag(settings: Settings, groups: list[str]) -> dict[str, list[tuple[str, int]]]:
    """Per group, ``(topic, lag)`` of every partition it committed (read-committed ends)."""
    from confluent_kafka import (
        ConsumerGroupTopicPartitions,
        IsolationLevel,
        KafkaException,
        TopicPartition,
    )
    from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

    from agentstream.core.kafka import admin_client

    admin = admin_client(settings)
    latest: Any = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    try:
        committed: dict[str, list[Any]] = {}
        for group in groups:
            [future] = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=10
            ).values()
            parts = future.result().topic_partitions or []
            committed[group] = [tp for tp in parts if tp.offset >= 0]
        wanted = {(tp.topic, tp.partition) for parts in committed.values() for tp in parts}
        ends: dict[tuple[str, int], int] = {}
        if wanted:
            futures = admin.list_offsets(
                {TopicPartition(t, p): latest for t, p in wanted},
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=10,
            )
            for tp, offsets in futures.items():
                ends[(tp.topic, tp.partition)] = offsets.result().offset
    except KafkaException as exc:
        raise AgentstreamError(f"cannot read consumer offsets: {exc}") from exc
    return {
        group: [(tp.topic, max(0, ends[(tp.topic, tp.partition)] - tp.offset)) for tp in parts]
        for group, parts in committed.items()
    }


def _shift(pop: Population, delta: timedelta) -> Population:
    """Every non-backlog event (and the closing instants) ``delta`` later."""
    if not delta:
        return pop
    events = []
    for p in pop.events:
        if p.phase == "backlog" or p.kind == "clock":
            events.append(p)
            continue
        moved = p.event.model_copy(update={"event_time": p.event.event_time + delta})
        events.append(replace(p, event=moved))
    return replace(pop, events=events, closing_at=pop.closing_at + delta, cutoff=pop.cutoff + delta)


class _Soak:
    def __init__(self, options: SoakOptions, home: Path, status: _Status) -> None:
        self.options = options
        self.home = home
        self.status = status
        self.rng = random.Random(options.seed * 7919 + 1)
        self.tag = uuid.uuid4().hex[:8]  # fresh topics and groups, even on a shared broker
        self.fault_error: BaseException | None = None
        self.drained = False

    # -- producing -------------------------------------------------------------------------

    def _emit(self, emitter: Any, planned: list[Planned]) -> None:
        for p in planned:
            for _ in range(p.copies):
                emitter.emit(p.event)
                self.status.sent += 1

    def _flush(self, emitter: Any, what: str) -> None:
        """Until every emitted event is delivered (spooled ones replayed)."""
        while emitter.flush(30) != 0 or emitter.spool.has_waiting():
            self._refresh(emitter)
            time.sleep(0.2)
        self._refresh(emitter)
        self.status.note(f"{what}: all delivered")

    def _refresh(self, emitter: Any) -> None:
        s = emitter.stats()
        self.status.emitter = {
            "delivered": s.delivered,
            "spooled": s.spooled,
            "replayed": s.replayed,
            "queued": s.queued,
        }

    # -- faults ----------------------------------------------------------------------------

    def _faults(self, schedule: list[_Fault], began: float, fleet: _Fleet, local: Any) -> None:
        try:
            for fault in schedule:
                while time.monotonic() - began < fault.at_s:
                    time.sleep(0.1)
                if fault.name == "kill":
                    fleet.kill(fault.index)
                    fleet.workers[fault.index].wait_ready(120, self.status)
                    self.status.note(f"worker {fault.index} consuming again")
                elif fault.name == "broker":
                    if local is None:
                        self.status.note("broker fault skipped (not a broker the soak started)")
                        continue
                    self.status.note("stopping the broker")
                    local.stop()
                    outage = min(10.0, 0.08 * self.options.duration_s)
                    time.sleep(outage)  # the outage's length: a fault, not a wait
                    local.start()
                    self.status.note(f"broker back after {outage:.0f}s down")
                elif fault.name == "clickhouse":
                    down = self.home / "clickhouse.down"
                    down.write_text("fault injected by agentstream soak\n")
                    self.status.note("ClickHouse unavailable (inserts fail)")
                    outage = min(15.0, 0.12 * self.options.duration_s)
                    time.sleep(outage)  # the outage's length
                    down.unlink()
                    self.status.note(f"ClickHouse back after {outage:.0f}s")
        except BaseException as exc:  # reported by the main thread
            self.fault_error = exc
            self.status.note(f"fault thread failed: {exc}")

    # -- draining --------------------------------------------------------------------------

    def _scrape(self, fleet: _Fleet) -> dict[str, float]:
        figures = {"processed": 0.0, "stored": 0.0}
        for worker in fleet.workers:
            page = worker.page()
            if page is None:
                continue
            figures["processed"] += _metric(
                page, "agentstream_events_consumed_total", stage="processors"
            )
            figures["stored"] += _metric(page, "agentstream_sink_rows_total")
        self.status.figures.update(figures)
        return figures

    def _wait_drained(self, settings: Settings, fleet: _Fleet) -> bool:
        """Lag 0 on the processors' and the sink's groups, and nothing new stored for a while."""
        topics = settings.topics
        inputs = {topics.name(s) for s in _INPUTS}
        sink_inputs = {topics.name(s) for s in _SINK_INPUTS}
        outputs = {topics.name(s) for s in _OUTPUTS}
        groups = [settings.worker.processors_group, settings.sink.consumer_group]
        deadline = time.monotonic() + self.options.drain_timeout_s
        quiet_since: float | None = None
        last: tuple[float, float] | None = None
        while time.monotonic() < deadline:
            figures = self._scrape(fleet)
            try:
                lags = _group_lag(settings, groups)
            except AgentstreamError:
                time.sleep(1.0)
                continue
            processors = [(t, lag) for t, lag in lags.get(groups[0], []) if t in inputs]
            sink = lags.get(groups[1], [])
            behind = sum(lag for _, lag in processors) + sum(
                lag for t, lag in sink if t in sink_inputs
            )
            behind += sum(max(0, lag - 1) for t, lag in sink if t in outputs)  # commit marker
            self.status.figures["lag"] = behind
            complete = len(processors) == len(inputs) * settings.kafka.partitions
            now = time.monotonic()
            mark = (figures["stored"], figures["processed"])
            if behind or not complete or mark != last:
                quiet_since = now
            last = mark
            if quiet_since is not None and now - quiet_since >= self.options.quiet_s:
                self.status.note(f"drained: lag 0, nothing new for {self.options.quiet_s:.0f}s")
                return True
            time.sleep(1.0)
        # compared anyway: what is stored by now is what a user would see
        self.status.note(f"NOT drained after {self.options.drain_timeout_s:.0f}s; comparing anyway")
        return False

    # -- the run ---------------------------------------------------------------------------

    def run(self, refresh: Callable[[], None]) -> tuple[Population, Settings]:
        from agentstream import Emitter
        from agentstream.core.topics import ensure_topics

        options, status = self.options, self.status
        with _broker(options, self.home, status) as (bootstrap, local):
            overrides = _overrides(self.home, self.tag, bootstrap)
            settings = load_settings(**overrides)
            ensure_topics(bootstrap, settings.topics.all().values(), partitions=6)
            lead = 30.0 if "backlog" in options.faults else 15.0
            config = PopulationConfig(
                start=datetime.now(UTC) + timedelta(seconds=lead),
                seed=options.seed,
                live_s=options.duration_s,
                runs_per_s=options.runs_per_s,
                faults=options.faults,
                late_by_s=options.late_by_s,
                max_budget_s=max(
                    LIFECYCLE["init_budget_s"],
                    LIFECYCLE["preparing_budget_s"],
                    LIFECYCLE["executing_budget_s"],
                    LIFECYCLE["reviewing_budget_s"],
                ),
                grace_s=LIFECYCLE["timeout_grace_s"],
                lateness_s=ROLLUPS["allowed_lateness_s"],
            )
            pop = generate(config)
            status.planned = pop.sent
            emitter = Emitter(settings, replay_on_start=False)
            try:
                backlog = pop.phase("backlog")
                if backlog:
                    status.phase = "backlog"
                    self._emit(emitter, backlog)
                    self._flush(emitter, f"backlog of {len(backlog):,} events")
                workers = [
                    _Worker(i, _worker_env(overrides, self.home, i, self.tag), self.home, i == 0)
                    for i in range(options.workers)
                ]
                fleet = _Fleet(workers, status)
                status.phase = "starting the worker"
                fleet.start()
                try:
                    for worker in workers:
                        if not worker.wait_ready(180, status):
                            tail = worker.log.read_text(errors="replace").splitlines()[-15:]
                            raise AgentstreamError("the worker did not start:\n" + "\n".join(tail))
                    status.note(f"{len(workers)} worker(s) consuming")
                    now = datetime.now(UTC)
                    delta = max(timedelta(0), now - config.start)
                    pop = _shift(
                        pop, timedelta(milliseconds=-(-delta // timedelta(milliseconds=1)))
                    )
                    while datetime.now(UTC) < pop.config.start:
                        time.sleep(0.05)
                    began = time.monotonic()
                    # one thread per kind of fault: they overlap as they would in production
                    schedule = _schedule(options, self.rng)
                    threads = [
                        threading.Thread(
                            target=self._faults,
                            args=([f for f in schedule if f.name == kind], began, fleet, local),
                            name=f"soak-{kind}",
                            daemon=True,
                        )
                        for kind in sorted({f.name for f in schedule})
                    ]
                    for thread in threads:
                        thread.start()
                    status.phase = "live"
                    for p in pop.phase("live"):
                        while time.monotonic() - began < p.at:
                            refresh()
                            self._refresh(emitter)
                            time.sleep(min(0.05, max(0.0, p.at - (time.monotonic() - began))))
                        self._emit(emitter, [p])
                    late = pop.phase("late")
                    if late:
                        status.phase = "late producer"
                        self._emit(emitter, late)
                        status.note(f"late producer sent {len(late):,} events")
                    status.phase = "waiting for the faults to end"
                    for thread in threads:
                        while thread.is_alive():
                            thread.join(0.2)
                            refresh()
                    if self.fault_error is not None:
                        raise AgentstreamError(f"fault injection failed: {self.fault_error}")
                    status.phase = "delivering"
                    self._flush(emitter, "live and late events")
                    status.phase = "waiting for the closing time"
                    while datetime.now(UTC) < pop.closing_at:
                        refresh()
                        self._scrape(fleet)
                        time.sleep(0.2)
                    self._emit(emitter, pop.phase("closing"))
                    self._flush(emitter, "closing runs")
                    status.phase = "draining"
                    self.drained = self._wait_drained(settings, fleet)
                finally:
                    status.phase = "stopping the workers"
                    refresh()
                    fleet.stop()
            finally:
                emitter.close(10)
        return pop, settings


def run_soak(
    options: SoakOptions,
    *,
    console: Any = None,
    display: bool = True,
) -> SoakResult:
    """Run the soak; the table's rows (any difference: ``result.ok`` is False)."""
    from rich.console import Console
    from rich.live import Live

    if options.workers < 1:
        raise AgentstreamError("--workers: at least 1")
    unknown = set(options.faults) - set(FAULTS)
    if unknown:
        raise AgentstreamError(
            f"--faults: unknown {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}"
        )
    console = console or Console()
    # the soak's own Emitter complains while the broker is down: that is the fault, not news
    quiet = logging.getLogger("agentstream")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    home = (options.home or Path(tempfile.mkdtemp(prefix="agentstream-soak-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    status = _Status()
    soak = _Soak(options, home, status)
    began = time.monotonic()
    try:
        if display:
            with Live(_LiveView(status), console=console, refresh_per_second=4):
                pop, settings = soak.run(lambda: None)
        else:
            pop, settings = soak.run(lambda: None)
        status.phase = "comparing"
        from agentstream.devtools.soak.stored import read_stored

        truth = compute_truth(
            (p.event for p in pop.events for _ in range(p.copies)), settings.lifecycle
        )
        stored = read_stored(settings.clickhouse, pop.cutoff)
        rows = [
            Row("pipeline drained (lag 0, quiet)", 1, int(soak.drained)),
            *compare(
                truth,
                stored,
                cutoff_us=to_us(pop.cutoff),
                accuracy=settings.rollups.sketch_relative_accuracy,
            ),
        ]
        unexpected: dict[str, int] = {}
        for letter in stored.dead_letters:
            if letter.event_id is None or truth.dead_letter_category(letter.event_id) is None:
                reason = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", letter.reason)[:120]
                key = f"{letter.source} {letter.error_type}: {reason}"
                unexpected[key] = unexpected.get(key, 0) + 1
        report = {
            "rows": [
                {
                    "figure": r.figure,
                    "truth": r.truth,
                    "stored": r.stored,
                    "difference": r.difference,
                }
                for r in rows
            ],
            "unexpected_dead_letters": dict(sorted(unexpected.items(), key=lambda kv: -kv[1])),
            "log": status.log,
        }
        (home / "report.json").write_text(json.dumps(report, indent=2))
    except BaseException:
        console.print(f"the soak's files are kept in {home}")
        raise
    finally:
        quiet.setLevel(level)
    return SoakResult(rows, time.monotonic() - began, status.sent, home, status.log)


def cleanup(result: SoakResult, options: SoakOptions) -> None:
    """Remove the temporary home unless asked to keep it (or something differs)."""
    if options.home is None and not options.keep and result.ok:
        shutil.rmtree(result.home, ignore_errors=True)
