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
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentstream.core.config import Settings, load_settings
from agentstream.core.errors import AgentstreamError
from agentstream.devtools.soak.arrivals import Arrivals, read_arrivals
from agentstream.devtools.soak.compare import (
    Row,
    cell_differences,
    compare,
    write_cell_differences,
)
from agentstream.devtools.soak.faults import broker, inject, schedule
from agentstream.devtools.soak.fleet import Fleet, LiveView, Status, Worker, metric
from agentstream.devtools.soak.options import (
    INPUTS,
    LIFECYCLE,
    OUTPUTS,
    ROLLUPS,
    SINK_INPUTS,
    SoakOptions,
    SoakResult,
)
from agentstream.devtools.soak.population import (
    FAULTS,
    Planned,
    Population,
    PopulationConfig,
    generate,
)
from agentstream.devtools.soak.truth import compute_truth, to_us
from agentstream.devtools.soak.wiring import (
    group_lag,
    overrides,
    shift,
    unread_records,
    worker_env,
)

__all__ = ["SoakOptions", "SoakResult", "cleanup", "run_soak"]


class _Soak:
    def __init__(self, options: SoakOptions, home: Path, status: Status) -> None:
        self.options = options
        self.home = home
        self.status = status
        self.rng = random.Random(options.seed * 7919 + 1)
        self.tag = uuid.uuid4().hex[:8]  # fresh topics and groups, even on a shared broker
        self.fault_error: BaseException | None = None
        self.drained = False
        #: monotonic: the first event emitted, and when the pipeline was found drained
        self.first_emit = 0.0
        self.drained_at = 0.0
        self.arrivals: Arrivals = {}

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

    def _faults(self, faults: list[Any], began: float, fleet: Fleet, local: Any) -> None:
        error = inject(faults, began, fleet, local, self.options, self.home, self.status)
        if error is not None:
            self.fault_error = error

    # -- draining --------------------------------------------------------------------------

    def _scrape(self, fleet: Fleet) -> dict[str, float]:
        figures = {"processed": 0.0, "stored": 0.0}
        for worker in fleet.workers:
            page = worker.page()
            if page is None:
                continue
            figures["processed"] += metric(
                page, "agentstream_events_consumed_total", stage="processors"
            )
            figures["stored"] += metric(page, "agentstream_sink_rows_total")
        self.status.figures.update(figures)
        return figures

    def _wait_drained(self, settings: Settings, fleet: Fleet) -> bool:
        """Lag 0 on the processors' and the sink's groups, and nothing new stored for a while."""
        topics = settings.topics
        inputs = {topics.name(s) for s in INPUTS}
        sink_inputs = {topics.name(s) for s in SINK_INPUTS}
        outputs = {topics.name(s) for s in OUTPUTS}
        from agentstream.processors.engine import partials_topic  # worker extra: lazily

        partials = partials_topic(settings)
        groups = [settings.worker.processors_group, settings.sink.consumer_group]
        deadline = time.monotonic() + self.options.drain_timeout_s
        quiet_since: float | None = None
        last: tuple[float, float] | None = None
        while time.monotonic() < deadline:
            figures = self._scrape(fleet)
            try:
                lags = group_lag(settings, groups)
            except AgentstreamError:
                time.sleep(1.0)
                continue
            processors = [(t, lag) for t, lag in lags.get(groups[0], []) if t in inputs]
            sink = lags.get(groups[1], [])
            behind = sum(lag for _, lag in processors) + sum(
                lag for t, lag in sink if t in sink_inputs
            )
            # outputs (and the merge stage's own input, the partials): past the commit marker
            # there may be an aborted transaction's markers (kills, the broker stop): what
            # counts is whether a record is left to read
            tails = sum(max(0, lag - 1) for t, lag in sink if t in outputs)
            merge = sum(max(0, lag - 1) for t, lag in lags.get(groups[0], []) if t == partials)
            if not behind and tails:
                tails = unread_records(settings, groups[1], outputs)
            if not behind and merge:
                merge = unread_records(settings, groups[0], {partials})
            behind += tails + merge
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
        with broker(options, self.home, status) as (bootstrap, local):
            sections = overrides(self.home, self.tag, bootstrap)
            settings = load_settings(**sections)
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
                self.first_emit = time.monotonic()
                backlog = pop.phase("backlog")
                if backlog:
                    status.phase = "backlog"
                    self._emit(emitter, backlog)
                    self._flush(emitter, f"backlog of {len(backlog):,} events")
                workers = [
                    Worker(i, worker_env(sections, self.home, i, self.tag), self.home, i == 0)
                    for i in range(options.workers)
                ]
                fleet = Fleet(
                    workers,
                    status,
                    spawn=lambda i: Worker(
                        i, worker_env(sections, self.home, i, self.tag), self.home, False
                    ),
                )
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
                    pop = shift(pop, timedelta(milliseconds=-(-delta // timedelta(milliseconds=1))))
                    while datetime.now(UTC) < pop.config.start:
                        time.sleep(0.05)
                    began = time.monotonic()
                    # one thread per kind of fault: they overlap as they would in production
                    planned = schedule(options, self.rng)
                    threads = [
                        threading.Thread(
                            target=self._faults,
                            args=([f for f in planned if f.name == kind], began, fleet, local),
                            name=f"soak-{kind}",
                            daemon=True,
                        )
                        for kind in sorted({f.name for f in planned})
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
                    self.drained_at = time.monotonic()
                finally:
                    status.phase = "stopping the workers"
                    refresh()
                    fleet.stop()
                status.phase = "reading the input's order"
                self.arrivals = read_arrivals(settings, INPUTS)
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
    status = Status()
    soak = _Soak(options, home, status)
    began = time.monotonic()
    try:
        if display:
            with Live(LiveView(status), console=console, refresh_per_second=4):
                pop, settings = soak.run(lambda: None)
        else:
            pop, settings = soak.run(lambda: None)
        status.phase = "comparing"
        from agentstream.devtools.soak.stored import read_stored

        truth = compute_truth(
            (p.event for p in pop.events for _ in range(p.copies)),
            settings.lifecycle,
            soak.arrivals,
            settings.rollups.allowed_lateness_s,
            settings.rollups.daily_scope_kinds,
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
        with (home / "population.jsonl").open("w") as out:
            for p in pop.events:
                line = {"phase": p.phase, "kind": p.kind, "at": p.at, "copies": p.copies}
                line["type"] = type(p.event).__name__
                line["event"] = p.event.model_dump(mode="json")
                out.write(json.dumps(line) + "\n")
        cells = write_cell_differences(
            home / "differing-cells.tsv",
            cell_differences(
                truth,
                stored,
                cutoff_us=to_us(pop.cutoff),
                accuracy=settings.rollups.sketch_relative_accuracy,
            ),
        )
        report = {
            "differing_cells": {"file": str(home / "differing-cells.tsv"), "lines": cells},
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
    return SoakResult(
        rows,
        time.monotonic() - began,
        status.sent,
        home,
        status.log,
        pipeline_s=max(0.0, soak.drained_at - soak.first_emit),
    )


def cleanup(result: SoakResult, options: SoakOptions) -> None:
    """Remove the temporary home unless asked to keep it (or something differs)."""
    if options.home is None and not options.keep and result.ok:
        shutil.rmtree(result.home, ignore_errors=True)
