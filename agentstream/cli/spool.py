"""`agentstream spool status | replay`: the Emitter's durable spool.

``status`` lists the segments (waiting, in use by a live emitter or replay,
rejected) with their records and bytes; ``replay`` drains the waiting segments
to the configured broker, showing progress, and reports how many were delivered.
Both read ``emitter.spool_dir`` (``--spool-dir`` overrides it).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentstream.core.config import Settings, load_settings
from agentstream.core.errors import DeliveryError

if TYPE_CHECKING:
    from agentstream.emitter._replay import ReplayJob
    from agentstream.emitter._spool import QuarantineStats, SegmentInfo

__all__ = ["EXIT_NOT_DRAINED", "register"]

#: exit code of ``replay`` when some events could not be delivered (they stay spooled)
EXIT_NOT_DRAINED = 2
_POLL_S = 0.1


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    overrides: dict[str, Any] = {}
    if args.spool_dir is not None:
        overrides["spool_dir"] = args.spool_dir
    if getattr(args, "bootstrap", None):
        settings = settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
            }
        )
    if overrides:
        settings = settings.model_copy(
            update={"emitter": settings.emitter.model_copy(update=overrides)}
        )
    return settings


def _console(stderr: bool = False) -> Any:
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _status(args: argparse.Namespace) -> int:
    from agentstream.emitter._spool import Spool

    settings = _settings(args)
    spool = Spool(settings.emitter.spool_dir)
    infos = spool.infos()
    _print_status(spool.directory, infos, spool.quarantine_stats())
    return 0


def _print_status(directory: Path, infos: list[SegmentInfo], quarantine: QuarantineStats) -> None:
    waiting = sum(i.records for i in infos if i.state != "rejected")
    rejected = sum(i.records for i in infos if i.state == "rejected")
    size = sum(i.bytes for i in infos)
    torn = sum(int(i.torn_tail) for i in infos)
    summary = (
        f"{len(infos)} segment(s), {waiting} event(s) to replay, {rejected} rejected, "
        f"{_human(size)} in {directory}"
    )
    if torn:
        bad = sum(i.bad_bytes for i in infos)
        summary += (
            f"; {torn} segment(s) with {bad} unreadable byte(s) (torn tail or corruption; "
            "set aside when replayed)"
        )
    summary += (
        f"; quarantined: {quarantine.bytes} byte(s), {quarantine.frames} frame(s) "
        f"in {quarantine.files} file(s)"
    )
    console = _console()
    if console is None or not infos:
        for info in infos:
            print(
                f"{info.path.name}\t{info.state}\t{info.records} records\t{_human(info.bytes)}"
                + (f"\t{info.bad_bytes} unreadable bytes" if info.torn_tail else "")
            )
        print(summary)
        return
    from rich.table import Table

    table = Table(title=f"agentstream spool: {directory}")
    for column, justify in (
        ("segment", "left"),
        ("state", "left"),
        ("records", "right"),
        ("size", "right"),
        ("modified", "left"),
        ("unreadable", "right"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for info in infos:
        modified = datetime.fromtimestamp(info.modified).isoformat(timespec="seconds")
        table.add_row(
            info.path.name,
            info.state,
            str(info.records),
            _human(info.bytes),
            modified,
            f"{info.bad_bytes} B" if info.torn_tail else "",
        )
    console.print(table)
    console.print(summary, markup=False)


def _replay(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException, Producer

    from agentstream.emitter._emitter import kafka_producer_config
    from agentstream.emitter._replay import ReplayJob
    from agentstream.emitter._spool import Spool

    settings = _settings(args)
    spool = Spool(settings.emitter.spool_dir, segment_bytes=settings.emitter.spool_segment_bytes)
    conf = kafka_producer_config(settings)
    conf["log_level"] = 3
    producer = Producer(conf)
    bootstrap = settings.kafka.bootstrap_servers
    try:
        metadata = producer.list_topics(timeout=args.connect_timeout)
    except KafkaException as exc:
        raise DeliveryError(
            f"cannot reach Kafka at {bootstrap}: {exc.args[0]}; the spool is left as it is"
        ) from exc
    if not metadata.brokers:
        raise DeliveryError(f"no broker answers at {bootstrap}; the spool is left as it is")
    missing = sorted(spool.topics(include_rejected=args.include_rejected) - metadata.topics.keys())
    if missing:
        raise DeliveryError(
            f"topic(s) {', '.join(missing)} do not exist on {bootstrap}; create them with "
            "`agentstream topics create`; the spool is left as it is"
        )
    stats = spool.stats()
    expected = stats.records + (stats.rejected_records if args.include_rejected else 0)
    deadline = time.monotonic() + args.timeout
    totals = _Totals()
    # a few segments at a time (each is read into memory whole); failures are spooled
    # again into new segments, which ``seen`` keeps this run from retrying in a loop
    seen: set[str] = set()
    with _Progress(expected, f"replaying to {bootstrap}") as progress:
        while time.monotonic() < deadline:
            segments = spool.claim(include_rejected=args.include_rejected, limit=4)
            fresh = [s for s in segments if s.path.name not in seen]
            for segment in segments:
                if segment.path.name in seen:
                    segment.release()
            if not fresh:
                break
            seen.update(s.path.name for s in fresh)
            job = ReplayJob(spool, fresh)
            while not job.done and time.monotonic() < deadline:
                job.pump(producer)
                producer.poll(_POLL_S)
                job.reap()
                progress.update(totals.done + job.delivered + job.failed + job.rejected)
            if not job.done:
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                while job.outstanding:
                    producer.poll(_POLL_S)
                job.abandon()
            spool.close()  # failures went to a new segment: not retried in this run
            seen.update(p.name for p in spool.segment_paths())
            totals.add(job)
    spool.close()
    if totals.segments == 0:
        print(f"nothing to replay in {spool.directory}")
        return 0
    print(totals.message(bootstrap))
    return 0 if totals.total == totals.delivered else EXIT_NOT_DRAINED


class _Totals:
    """What a replay did, over its rounds."""

    def __init__(self) -> None:
        self.segments = self.total = self.delivered = self.failed = 0
        self.rejected = self.torn_tails = self.bad_bytes = self.bad_frames = 0

    @property
    def done(self) -> int:
        return self.delivered + self.failed + self.rejected

    def add(self, job: ReplayJob) -> None:
        self.segments += job.segments
        self.total += job.total
        self.delivered += job.delivered
        self.failed += job.failed
        self.rejected += job.rejected
        self.torn_tails += job.torn_tails
        self.bad_bytes += job.bad_bytes
        self.bad_frames += job.bad_frames

    def message(self, bootstrap: str) -> str:
        text = (
            f"replayed {self.delivered} of {self.total} event(s) from {self.segments} "
            f"segment(s) to {bootstrap}"
        )
        if self.failed:
            text += f"; {self.failed} failed again and stay spooled"
        if self.rejected:
            text += f"; {self.rejected} refused by the broker (kept as rejected)"
        if self.torn_tails:
            text += (
                f"; {self.bad_bytes} unreadable byte(s) (~{self.bad_frames} frame(s)) in "
                f"{self.torn_tails} segment(s) moved to quarantine/"
            )
        return text


class _Progress:
    """A rich progress bar on stderr, or a line every few seconds without rich."""

    def __init__(self, total: int, label: str) -> None:
        self._total = total
        self._label = label
        self._bar: Any = None
        self._task: Any = None
        self._last = 0.0

    def __enter__(self) -> _Progress:
        console = _console(stderr=True)
        if console is not None:
            from rich.progress import Progress

            self._bar = Progress(console=console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self._label, total=self._total)
        return self

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        now = time.monotonic()
        if now - self._last >= 5.0:
            self._last = now
            print(f"{self._label}: {done}/{self._total}", file=sys.stderr, flush=True)

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``spool status | replay``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--spool-dir", type=Path, help="spool folder (default: emitter.spool_dir, .local/spool)"
    )
    parser = subparsers.add_parser(
        "spool",
        help="events the Emitter could not deliver, kept on disk",
        description="Show or drain the Emitter's durable spool.",
    )
    actions = parser.add_subparsers(dest="spool_action", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status",
        parents=[common],
        help="segments, events and bytes waiting in the spool",
        description="List the spool's segments: waiting, in use (a live emitter or replay), "
        "rejected (refused by the broker for good).",
    )
    status.set_defaults(handler=_status)
    replay = actions.add_parser(
        "replay",
        parents=[common],
        help="send the spooled events to the configured broker",
        description="Drain the waiting segments to Kafka (kafka.bootstrap_servers); events that "
        f"fail again stay spooled (exit {EXIT_NOT_DRAINED}).",
    )
    replay.add_argument("--bootstrap", help="broker address (default: kafka.bootstrap_servers)")
    replay.add_argument(
        "--include-rejected",
        action="store_true",
        help="also retry segments the broker refused before (e.g. after raising a size limit)",
    )
    replay.add_argument(
        "--timeout", type=float, default=300.0, help="give up after this many seconds (300)"
    )
    replay.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the broker to answer first (10)",
    )
    replay.set_defaults(handler=_replay)
