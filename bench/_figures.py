"""The bench's figures; each returns figures measured beside their baseline."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from agentstream.core.config import Settings, load_settings
from agentstream.core.topics import ensure_topics
from bench._harness import BenchContext, Figure

__all__ = [
    "emit_overhead",
    "end_to_end_latency",
    "producer_throughput",
    "redaction",
    "sink_throughput",
    "soak_throughput",
    "worker_restart",
    "worker_throughput",
]


def _settings(ctx: BenchContext, **overrides: Any) -> Settings:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    return load_settings(
        kafka={"bootstrap_servers": ctx.bootstrap},
        topics={"prefix": prefix},
        emitter={"spool_dir": ctx.workdir / f"spool-{prefix}"},
        **overrides,
    )


def emit_overhead(ctx: BenchContext) -> list[Figure]:
    """What ``emit`` costs the agent's thread, beside a raw ``produce()`` of ready bytes."""
    from bench._emit import measure_emit_overhead

    result = measure_emit_overhead(bootstrap=ctx.bootstrap, n=min(ctx.events, 20_000))
    raw = result.raw_produce
    inline = result.helper_inline
    assert inline is not None
    return [
        Figure(
            "emit overhead, tool_call helper p50",
            result.helper.p50_us,
            "µs",
            "raw produce() p50",
            raw.p50_us,
            higher_is_better=False,
            target="≤ 10 µs",
            note=f"encoding on the caller: {inline.p50_us:.1f} µs",
        ),
        Figure(
            "emit overhead, tool_call helper p99",
            result.helper.p99_us,
            "µs",
            "raw produce() p99",
            raw.p99_us,
            higher_is_better=False,
            target="≤ 100 µs",
            note=f"encoding on the caller: {inline.p99_us:.1f} µs",
        ),
        *(
            [
                Figure(
                    "emit overhead, tool_call helper after a 1 ms wait p50",
                    result.helper_paced.p50_us,
                    "µs",
                    "raw produce() after a 1 ms wait p50",
                    result.raw_paced.p50_us,
                    higher_is_better=False,
                    note="each call after a blocking wait (caches cold, as in an agent doing I/O)",
                )
            ]
            if result.helper_paced is not None and result.raw_paced is not None
            else []
        ),
        Figure(
            "emit overhead, helper encoding on the caller p50",
            inline.p50_us,
            "µs",
            "raw produce() p50",
            raw.p50_us,
            higher_is_better=False,
            note="encode_in_background=False (the path before the encoder thread)",
        ),
        Figure(
            "emit throughput, helpers until in the producer's queue",
            result.throughput,
            "events/s",
            "encoding on the caller",
            result.throughput_inline,
            higher_is_better=True,
        ),
        Figure(
            "emit overhead, emit(model) p50",
            result.emit_model.p50_us,
            "µs",
            "raw produce() p50",
            raw.p50_us,
            higher_is_better=False,
            target="≤ 10 µs",
        ),
        Figure(
            "emit overhead, emit(model) p99",
            result.emit_model.p99_us,
            "µs",
            "raw produce() p99",
            raw.p99_us,
            higher_is_better=False,
        ),
        Figure(
            "emit overhead, emit(model) durability=disk p50",
            result.emit_disk.p50_us,
            "µs",
            "raw produce() p50",
            raw.p50_us,
            higher_is_better=False,
        ),
        Figure(
            "emit overhead, emit(model) durability=disk p99",
            result.emit_disk.p99_us,
            "µs",
            "raw produce() p99",
            raw.p99_us,
            higher_is_better=False,
        ),
        Figure(
            "emit overhead, disk + fsync before return p50",
            result.emit_disk_fsync.p50_us,
            "µs",
            "raw produce() p50",
            raw.p50_us,
            higher_is_better=False,
        ),
        Figure(
            "emit overhead, disk + fsync before return p99",
            result.emit_disk_fsync.p99_us,
            "µs",
            "raw produce() p99",
            raw.p99_us,
            higher_is_better=False,
        ),
    ]


def redaction(ctx: BenchContext) -> list[Figure]:
    """Recall and precision on the labelled corpus; redaction cost per event beside the
    emit cost without redaction (an Emitter built with ``redactor=None``, same run)."""
    from bench._emit import measure_emit_overhead
    from bench._redaction import measure_redaction

    quality = measure_redaction()
    emit = measure_emit_overhead(n=min(ctx.events, 20_000))
    assert emit.emit_unredacted is not None
    plain = emit.emit_unredacted.p50_us
    corpus = f"{quality.positives} positives, {quality.negatives} negatives"
    return [
        Figure(
            "redaction recall (labelled corpus)",
            100 * quality.recall,
            "%",
            "every positive",
            100.0,
            higher_is_better=True,
            target="100 %",
            note=corpus,
        ),
        Figure(
            "redaction precision (labelled corpus)",
            100 * quality.precision,
            "%",
            "no negative damaged",
            100.0,
            higher_is_better=True,
            target="100 %",
            note=corpus,
        ),
        Figure(
            "redaction per event, clean ToolCall p50",
            quality.clean_p50_us,
            "µs",
            "emit(model) p50 without redaction",
            plain,
            higher_is_better=False,
        ),
        Figure(
            "redaction per event, corpus texts p50",
            quality.corpus_p50_us,
            "µs",
            "emit(model) p50 without redaction",
            plain,
            higher_is_better=False,
            note=f"mean {quality.corpus_mean_us:.1f} µs",
        ),
        Figure(
            "emit(model) p50 with redaction (closed port)",
            emit.emit_model.p50_us,
            "µs",
            "emit(model) p50 without redaction",
            plain,
            higher_is_better=False,
        ),
    ]


def _tool_calls(n: int) -> list[Any]:
    from agentstream.devtools.simulate import Simulation, SimulationConfig
    from agentstream.schemas import ToolCall

    sim = Simulation(SimulationConfig(duration_s=None, max_events=n * 3, runs_per_s=1000))
    calls = [event for _, event in sim.events() if isinstance(event, ToolCall)]
    return calls[:n]


def producer_throughput(ctx: BenchContext) -> list[Figure]:
    """Events/s through the Emitter (validated models → broker acks) vs raw produce."""
    from confluent_kafka import Producer

    from agentstream import Emitter
    from agentstream.emitter._emitter import kafka_producer_config
    from agentstream.schemas import encode_model

    settings = _settings(ctx)
    topic = settings.topics.name("tool_calls")
    ensure_topics(ctx.bootstrap, [topic], partitions=settings.kafka.partitions)
    calls = _tool_calls(ctx.events)
    payloads = [(call.run_id.encode(), encode_model(call)) for call in calls]

    producer = Producer(kafka_producer_config(settings))
    start = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    raw_rate = len(payloads) / (time.perf_counter() - start)
    ctx.mark("producer", raw_events_per_s=raw_rate)

    emitter = Emitter(settings, replay_on_start=False)
    start = time.perf_counter()
    for call in calls:
        emitter.emit(call)
    emitter.flush(60)
    rate = len(calls) / (time.perf_counter() - start)
    emitter.close()
    ctx.mark("producer", emitter_events_per_s=rate)
    return [
        Figure(
            "producer throughput (Emitter, acks=all)",
            rate,
            "events/s",
            "raw confluent-kafka produce loop",
            raw_rate,
            higher_is_better=True,
        )
    ]


def sink_throughput(ctx: BenchContext) -> list[Figure]:
    """Rows/s through the sink vs the fastest raw chdb insert of the same rows (every
    format measured); the sink worker's whole path vs decoding alone."""
    from bench._sink import bench_sink

    result = bench_sink(min(ctx.events, 100_000))
    best_name, best = result.fastest_raw
    raw_note = ", ".join(f"{name} {value:,.0f}" for name, value in result.raw.items())
    ctx.mark(
        "sink",
        sink_rows_per_s=result.sink_rows_per_s,
        pipeline_rows_per_s=result.pipeline_rows_per_s,
        **{f"raw {name}": value for name, value in result.raw.items()},
    )
    return [
        Figure(
            f"sink rows/s (ClickHouseSink, batch {result.batch_size})",
            result.sink_rows_per_s,
            "rows/s",
            f"fastest raw chdb insert, same rows ({best_name})",
            best,
            higher_is_better=True,
            target=">= 0.7x",
            note=f"raw rows/s: {raw_note}",
        ),
        Figure(
            "sink rows/s vs raw TabSeparated insert",
            result.sink_rows_per_s,
            "rows/s",
            "raw TabSeparated insert, same rows",
            result.tsv_raw,
            higher_is_better=True,
        ),
        Figure(
            "decode + redact + sink rows/s (the sink worker's path)",
            result.pipeline_rows_per_s,
            "rows/s",
            "decode only (same codec, same bytes)",
            result.decode_only_rows_per_s,
            higher_is_better=True,
        ),
    ]


def worker_throughput(ctx: BenchContext) -> list[Figure]:
    """Sustained events/s of the processors on a mixed workload vs a decode-only consumer;
    the peer: the rollup job written for Quix Streams, on the same topics, in its own venv."""
    from bench._engine import bench_worker
    from bench._quix import peer_skipped, run_peer

    result = bench_worker(ctx.bootstrap, events=ctx.events, broker_pid=ctx.broker_pid)
    ctx.mark("worker", **result.timeline_point())
    peer_name, peer = "", float("nan")
    skipped = peer_skipped(ctx.peer_python)
    if skipped is None and ctx.peer_python is not None:
        grace = load_settings().rollups.allowed_lateness_s
        try:
            quix = run_peer(
                ctx.peer_python,
                ctx.bootstrap,
                result.topics,
                result.events,
                grace_s=grace,
                # a peer at a tenth of our rate still finishes
                timeout_s=120.0 + 10 * result.events / max(result.worker_events_per_s, 1.0),
            )
        except RuntimeError as exc:
            skipped = f"Quix Streams peer skipped: {exc}"
        else:
            peer_name = f"Quix Streams {quix.version}".rstrip() + " rollup job, exactly-once"
            peer = quix.events_per_s
            ctx.mark("worker", quix_events_per_s=peer)
    if skipped is not None:
        print(skipped)
    figures = [
        Figure(
            "worker sustained throughput (mixed workload)",
            result.worker_events_per_s,
            "events/s",
            "plain consumer that only decodes",
            result.decode_only_events_per_s,
            higher_is_better=True,
            target="20,000 events/s",
            peer_name=peer_name,
            peer=peer,
        ),
        Figure(
            "worker CPU per event (its process, every thread)",
            result.worker_cpu_us,
            "CPU µs",
            "the decode-only consumer's",
            result.decode_only_cpu_us,
            higher_is_better=False,
            note="the engine's own work per event beside decoding alone: what caps one worker",
        ),
    ]
    if math.isfinite(result.broker_worker_us):
        figures.append(
            Figure(
                "broker CPU per event behind the worker",
                result.broker_worker_us,
                "CPU µs",
                "behind the decode-only consumer",
                result.broker_decode_only_us,
                higher_is_better=False,
                note="transactions, changelog and outputs; the broker shares this machine's cores",
            )
        )
    return figures


def end_to_end_latency(ctx: BenchContext) -> list[Figure]:
    """Emit → row visible in ClickHouse, p50/p99, beside the Kafka round trip alone."""
    from bench._e2e import measure_end_to_end

    result = measure_end_to_end(ctx, _settings(ctx))
    return [
        Figure(
            "end-to-end emit → row visible, p50",
            result.p50_ms,
            "ms",
            "Kafka produce → consume p50",
            result.kafka_p50_ms,
            higher_is_better=False,
        ),
        Figure(
            "end-to-end emit → row visible, p99",
            result.p99_ms,
            "ms",
            "Kafka produce → consume p99",
            result.kafka_p99_ms,
            higher_is_better=False,
        ),
    ]


def worker_restart(ctx: BenchContext) -> list[Figure]:
    """kill -9 of the worker → processing again, beside a cold start."""
    from bench._restart import bench_restart

    result = bench_restart(ctx.bootstrap, ctx.workdir)
    ctx.mark("restart", restart_s=result.restart_s, cold_start_s=result.cold_start_s)
    return [
        Figure(
            "worker restart, kill -9 → processing again",
            result.restart_s,
            "s",
            "cold start → processing",
            result.cold_start_s,
            higher_is_better=False,
            note="same worker.instance_id: static member, fenced predecessor",
        )
    ]


def soak_throughput(ctx: BenchContext) -> list[Figure]:
    """A short soak under every fault beside the same soak without faults."""
    from bench._soak import bench_soak

    result = bench_soak(
        ctx.bootstrap, ctx.workdir, duration_s=20.0 if ctx.events < 10_000 else 40.0
    )
    ctx.mark("soak", faults=result.faults_events_per_s, clean=result.clean_events_per_s)
    return [
        Figure(
            f"soak events/s, every fault but broker ({result.duration_s:.0f} s live)",
            result.faults_events_per_s,
            "events/s",
            "same soak and input, no kill or outage",
            result.clean_events_per_s,
            higher_is_better=True,
            note=f"{result.differences} figures differ from the truth (must be 0)",
        )
    ]


def worker_scale(ctx: BenchContext) -> list[Figure]:
    """Two worker processes vs one on the same mixed workload (6 partitions)."""
    from bench._scale import bench_scale, cpu_figures

    result = bench_scale(
        ctx.bootstrap, ctx.workdir, events=3 * ctx.events
    )  # long enough for a steady state
    ctx.mark(
        "scale",
        one_process_events_per_s=result.one_process,
        two_processes_events_per_s=result.two_processes,
    )
    return [
        Figure(
            "processors, 2 worker processes (6 partitions)",
            result.two_processes,
            "events/s",
            "1 worker process, same records",
            result.one_process,
            higher_is_better=True,
            target="≥ 1.4 x one process",
            note="from every process holding partitions to the last commit (joins: see rebalance)",
        ),
        Figure(
            "processors, per-partition rate with 2 processes",
            result.per_partition_two,
            "events/s",
            "per-partition rate with 1 process",
            result.per_partition_one,
            higher_is_better=True,
            note="N workers ≈ min(N, partitions) / 2 x the 2-process figure on idle cores",
        ),
        *cpu_figures(result),
    ]


def worker_rebalance(ctx: BenchContext) -> list[Figure]:
    """What a rebalance costs under live traffic: a worker joining, one SIGKILLed."""
    from bench._scale import bench_rebalance

    result = bench_rebalance(ctx.bootstrap, ctx.workdir)
    ctx.mark("rebalance", join_s=result.join_s, leave_s=result.leave_s)
    return [
        Figure(
            "rebalance: a second worker joins → all partitions processing",
            result.join_s,
            "s",
            "cold start → processing",
            result.cold_start_s,
            higher_is_better=False,
            note="includes the newcomer's process start and its restore",
        ),
        Figure(
            "rebalance: a worker SIGKILLed → its partitions processing elsewhere",
            result.leave_s,
            "s",
            "cold start → processing",
            result.cold_start_s,
            higher_is_better=False,
            note="static member: session.timeout.ms, then its open transaction's timeout",
        ),
    ]
