"""The peer: the rollup job written for Quix Streams, on the processors' bench topics.

Same records, same broker, same run as :func:`bench._engine.bench_worker`: the
mixed workload's four input topics. The job is the core of our rollups, in
Quix's idiom, exactly once (Kafka transactions, as ours):

* decode each record with the same Avro codec (single-object framing);
* event time from the record (``timestamp_extractor``);
* ``group_by`` the tenant/agent scope (Quix repartitions through a topic);
* 1 s tumbling windows on event time, with our allowed lateness as grace: count,
  errors (status ERROR), mean and max latency (tool and model calls); each closed
  window goes to an output topic.

Smaller than ours (no lifecycle, one resolution, one scope, no sketches, no
alerts): the ratio flatters the peer.

Quix Streams pins a confluent-kafka of its own, so the job runs in a venv of its own
(``make bench`` keeps ``.venv-peers/`` from ``bench/peers.txt``): :func:`run_peer` starts
``<peer python> -m bench._quix ...`` from the repository root (``agentstream.schemas``
is then imported from the source tree: it needs only pydantic and fastavro), which prints
one JSON line (:meth:`QuixBench.to_json`). Without that python the bench says it skipped
the peer.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["QuixBench", "bench_quix", "main", "parser", "peer_command", "peer_skipped", "run_peer"]

#: the peer stops when no record came for this long (it is then behind: an error)
_IDLE_S = 60.0
#: the repository root: the peer process imports ``bench`` and ``agentstream`` from here
_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class QuixBench:
    """Events/s of the Quix Streams job over the same input records."""

    events: int
    events_per_s: float
    #: the Quix Streams version that ran the job
    version: str = ""

    def to_json(self) -> str:
        """The one line the peer process prints."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_output(cls, stdout: str) -> QuixBench:
        """The result from the peer process's stdout: its last JSON line."""
        for line in reversed(stdout.splitlines()):
            if line.startswith("{"):
                fields = json.loads(line)
                return cls(
                    events=int(fields["events"]),
                    events_per_s=float(fields["events_per_s"]),
                    version=str(fields.get("version", "")),
                )
        raise ValueError("the Quix Streams peer printed no result line")


def peer_skipped(python: Path | None) -> str | None:
    """``None`` when ``python`` can run the peer, else why not (one line)."""
    if python is None:
        return "Quix Streams peer skipped: no --peer-python given"
    if not os.access(python, os.X_OK):
        return f"Quix Streams peer skipped: no {python} (make bench creates it)"
    return None


def peer_command(
    python: Path, bootstrap: str, topics: Sequence[str], events: int, *, grace_s: float
) -> list[str]:
    """The peer process's command line (read back by :func:`main`)."""
    return [
        str(python),
        "-m",
        "bench._quix",
        "--bootstrap",
        bootstrap,
        "--events",
        str(events),
        "--grace",
        str(grace_s),
        "--topics",
        *topics,
    ]


def run_peer(
    python: Path,
    bootstrap: str,
    topics: Sequence[str],
    events: int,
    *,
    grace_s: float,
    timeout_s: float,
) -> QuixBench:
    """Run the job in ``python`` (the peer venv's) over ``topics``; its result.

    Raises :class:`RuntimeError` (with the peer's last stderr line) when it fails.
    """
    # the peer runs from the repository root: a relative path means the caller's cwd (not
    # resolved: a venv's python is a symlink to the base interpreter, which has no Quix)
    command = peer_command(python.absolute(), bootstrap, topics, events, grace_s=grace_s)
    inherited = os.environ.get("PYTHONPATH")
    path = str(_ROOT) if not inherited else os.pathsep.join([str(_ROOT), inherited])
    env = {**os.environ, "PYTHONPATH": path}
    try:
        done = subprocess.run(
            command, cwd=_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"the Quix Streams peer ran longer than {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no stderr"])[-1]
        raise RuntimeError(f"the Quix Streams peer exited {done.returncode}: {tail}")
    try:
        return QuixBench.from_output(done.stdout)
    except (ValueError, KeyError) as exc:
        raise RuntimeError(f"the Quix Streams peer's output: {exc}") from exc


def _deserializer() -> Any:
    from quixstreams.models.serializers import Deserializer

    from agentstream.schemas import decode_dict

    class AvroRecords(Deserializer):  # type: ignore[misc, unused-ignore]  # untyped if absent
        """Framed Avro (either framing) → the record as a dict, by our codec."""

        def __init__(self) -> None:  # the base's takes and keeps nothing
            pass

        def __call__(self, value: bytes, ctx: Any) -> Any:
            return decode_dict(value)[1]

    return AvroRecords()


def _event_time_ms(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    when = value.get("event_time") if isinstance(value, dict) else None
    if isinstance(when, dt.datetime):
        return int(when.timestamp() * 1000)
    return int(timestamp)


def bench_quix(bootstrap: str, topics: Sequence[str], events: int, *, grace_s: float) -> QuixBench:
    """Run the job over ``topics`` (``events`` records in all) from the start; time it.

    ``grace_s``: how late (event time) a record may come for its window: ours, so that
    both jobs keep the same records (the inputs are read in an order of their own).
    """
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Max, Mean, Sum

    state = Path(tempfile.mkdtemp(prefix="agentstream-quix-"))
    run = uuid.uuid4().hex[:8]
    inputs = set(topics)
    seen = 0
    first: float | None = None
    last = 0.0
    app: Any = None

    def processed(topic: str, partition: int, offset: int) -> None:
        nonlocal seen, first, last
        if topic not in inputs:
            return
        now = time.perf_counter()
        first = first or now
        last = now
        seen += 1
        if seen >= events:
            app.stop()

    app = Application(
        broker_address=bootstrap,
        consumer_group=f"bench-quix-{run}",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=state,
        # a record later than the grace is dropped with a warning each: logging is not the job
        loglevel="ERROR",
        on_message_processed=processed,
    )
    deserializer = _deserializer()
    frames = [
        app.dataframe(
            app.topic(
                name,
                value_deserializer=deserializer,
                timestamp_extractor=_event_time_ms,
            )
        )
        for name in topics
    ]
    sdf = frames[0]
    for frame in frames[1:]:
        sdf = sdf.concat(frame)
    sdf = sdf.apply(
        lambda v: {
            "scope": f"{v['tenant_id']}/{v['agent_id']}",
            "error": 1 if v.get("status") == "ERROR" else 0,
            "latency_ms": v.get("latency_ms"),
        }
    )
    sdf = sdf.group_by("scope", name=f"scope-{run}")
    sdf = (
        sdf.tumbling_window(duration_ms=1000, grace_ms=int(grace_s * 1000))
        .agg(
            count=Count(),
            errors=Sum("error"),
            latency_mean=Mean("latency_ms"),
            latency_max=Max("latency_ms"),
        )
        .final()
    )
    sdf.to_topic(app.topic(f"bench-quix-rollups-{run}"))
    try:
        # stops when every input record is processed (``processed``), or when idle too long
        app.run(timeout=_IDLE_S, collect=False)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    if seen < events:
        raise RuntimeError(f"the Quix Streams job read {seen} of {events} records")
    elapsed = last - (first or last)
    return QuixBench(seen, seen / elapsed if elapsed else 0.0, metadata.version("quixstreams"))


def parser() -> argparse.ArgumentParser:
    """``python -m bench._quix``'s options (:func:`peer_command` writes them)."""
    parser = argparse.ArgumentParser(prog="python -m bench._quix", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="the broker, host:port")
    parser.add_argument("--topics", nargs="+", required=True, help="the input topics")
    parser.add_argument("--events", type=int, required=True, help="records on them in all")
    parser.add_argument("--grace", type=float, required=True, help="allowed lateness, seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench._quix`` (in the peer venv): run the job, print one JSON line."""
    args = parser().parse_args(argv)
    result = bench_quix(args.bootstrap, args.topics, args.events, grace_s=args.grace)
    print(result.to_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
