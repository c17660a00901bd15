"""Micro-benchmark: what ``emit`` costs the agent's thread, beside a raw ``produce()``.

Loops in one process, same producer settings, same event shape, one Emitter at a
time (another's threads would disturb the loop):

* ``tool_call`` helper — ``with emitter.tool_call(...) as call: call.result_summary = ...``
  in the default mode: context lookup, latency clock, the check of what the caller
  set, the ``params`` snapshot, the queue append (building the fields, validation,
  redaction and encoding run on the encoder thread). Back to back, in blocks of
  ``encoder_queue_max`` calls that alternate with the baseline's (both see the same
  load of a shared machine): from ``encoder_linger_ms`` into a block on, the encoder
  thread takes the GIL from the agent's thread (once per switch interval) and its
  work lands in some calls' time — the p99 and the mean;
* ``tool_call`` helper, agent in I/O — the same, each call after the thread waited
  1 ms in a blocking call (the encoder works while the GIL is free, as in an agent
  that awaits its tools and models), beside raw produces timed the same way, turn
  about (after a wait the CPU's caches are cold: both cost more than back to back);
* ``tool_call`` helper, encoding on the caller — ``encode_in_background = False``:
  validation, redaction, encoding and the enqueue on the caller's thread (the path
  of every emit before the encoder thread; the same run's "before");
* ``emit(model)`` — a ToolCall built beforehand (redaction check, encoding, enqueue),
  in the default ``durability = "memory"``;
* ``emit(model)`` without redaction — the same, from an Emitter built with
  ``redactor=None`` (what redaction costs is the difference);
* ``emit(model), durability=disk`` — the same, plus the write to the write-ahead
  log (one ``write``; fsync every 100 ms in the background);
* ``emit(model), disk + fsync each`` — ``wal_fsync_interval_ms = 0``: fsync before
  ``emit`` returns (power-loss safe; fewer calls, it is slow);
* baseline — ``Producer.produce()`` of the same event's pre-encoded bytes (no
  delivery callback);
* throughput — ``tool_call`` helpers in a tight loop, events/s until every event is
  in the producer's queue (waiting for the encoder thread to finish), beside the
  same loop with encoding on the caller: moving work off the caller's thread must
  not hide a loss of throughput (the GIL serialises both threads).

Each call is timed on its own (``perf_counter_ns``); p50 / p99 / mean in µs.
Without ``bootstrap`` the producer points at a closed port with a long delivery
timeout, so nothing is sent and nothing competes for the CPU; with a broker the
background delivery thread runs as in production. Run it with
``python -m bench._emit [--bootstrap host:port] [-n 20000]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

__all__ = ["EmitBench", "Timing", "measure_emit_overhead"]

#: the paced loop: the agent's thread waits this long (in a blocking call) between calls
_PAUSE_S = 0.001


@dataclass(frozen=True)
class Timing:
    """Per-call durations of one loop, in microseconds."""

    name: str
    n: int
    p50_us: float
    p99_us: float
    mean_us: float


@dataclass(frozen=True)
class EmitBench:
    """The loops; ``ratio`` = helper p50 / raw produce p50."""

    helper: Timing
    emit_model: Timing
    raw_produce: Timing
    broker: str
    emit_disk: Timing
    emit_disk_fsync: Timing
    #: ``emit(model)`` from an Emitter without redaction
    emit_unredacted: Timing | None = None
    #: the helper with ``encode_in_background = False`` (everything on the caller)
    helper_inline: Timing | None = None
    #: events/s of helpers in a loop until all are in the producer's queue
    throughput: float = 0.0
    throughput_inline: float = 0.0
    #: the helper, and the baseline, when the agent's thread waits (I/O, GIL free)
    #: between calls (caches cold, the encoder thread working meanwhile)
    helper_paced: Timing | None = None
    raw_paced: Timing | None = None

    @property
    def ratio(self) -> float:
        return self.helper.p50_us / self.raw_produce.p50_us if self.raw_produce.p50_us else 0.0


def _percentile(sorted_values: list[float], q: float) -> float:
    rank = max(1, min(len(sorted_values), round(q * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def measure_emit_overhead(
    bootstrap: str | None = None, *, n: int = 20_000, warmup: int = 2_000
) -> EmitBench:
    """Time ``n`` helper calls, ``n`` ``emit(model)`` calls and ``n`` raw produces."""
    from confluent_kafka import Producer

    from agentstream import Emitter, ToolCall, run_context
    from agentstream.core.config import load_settings
    from agentstream.core.topics import ensure_topics
    from agentstream.devtools.localstack import free_ports
    from agentstream.emitter._emitter import kafka_producer_config

    if bootstrap is None:
        [port] = free_ports("127.0.0.1", 1)
        target, delivery_ms = f"127.0.0.1:{port}", 600_000
    else:
        target, delivery_ms = bootstrap, 30_000
    closing_s = 10.0 if bootstrap else 0.0
    with tempfile.TemporaryDirectory(prefix="agentstream-bench-") as scratch:
        prefix = f"bench-emit-{uuid.uuid4().hex[:8]}."
        settings = load_settings(
            kafka={"bootstrap_servers": target},
            topics={"prefix": prefix},
            emitter={
                "spool_dir": Path(scratch) / "spool",
                "delivery_timeout_ms": delivery_ms,
                "queue_max_messages": 4 * (n + warmup) + 10,
            },
        )
        topic = settings.topics.name("tool_calls")
        if bootstrap is not None:  # brokers do not create topics on the fly
            ensure_topics(target, [topic], partitions=1)
        params = {"q": "weather in paris", "limit": 10}
        fields: dict[str, Any] = {
            "tenant_id": "acme",
            "user_id": "u-17",
            "agent_id": "planner",
            "agent_version": "1.4.0",
            "run_id": "run-bench",
            "tool": "search",
            "status": "SUCCESS",
            "latency_ms": 812.5,
            "params": params,
            "result_summary": "3 results",
        }
        models = [ToolCall(**fields) for _ in range(n + warmup)]
        # the baseline: ready bytes of the same size, no delivery callback (no Python
        # thread wants the GIL)
        raw: Any = Producer({**kafka_producer_config(settings), "log_level": 2})
        key = b"run-bench"
        emitter = Emitter(settings, replay_on_start=False)
        try:
            value = emitter.codec.encode_model(models[0])

            def produce() -> None:
                raw.produce(topic, value, key)

            for _ in range(warmup):
                produce()
            with run_context(
                tenant_id="acme", agent_id="planner", agent_version="1.4.0", user_id="u-17"
            ):

                def helper() -> None:
                    with emitter.tool_call("search", params=params) as call:
                        call.result_summary = "3 results"

                for _ in range(warmup):
                    helper()
                _settled(emitter)
                # blocks as long as the encoder's queue: the encoder thread wakes early in
                # each (after encoder_linger_ms) and takes the GIL from the loop from then
                # on, and the queue never overflows (callers would encode themselves)
                helper_timing, raw_timing = _time_paired(
                    [
                        ("tool_call helper", helper, partial(_settled, emitter)),
                        ("raw produce() baseline", produce, partial(_settled, emitter)),
                    ],
                    n,
                    settings.emitter.encoder_queue_max,
                )
                _settled(emitter)
                paced, raw_paced = _time_paced(
                    [("helper, agent in I/O", helper), ("raw produce(), in I/O", produce)],
                    max(200, n // 20),
                    _PAUSE_S,
                )
                rate = _throughput(emitter, helper, n)
        finally:
            # one Emitter at a time (as in an agent): another's threads would disturb a loop
            emitter.close(closing_s)
        inline_settings = settings.model_copy(
            update={"emitter": settings.emitter.model_copy(update={"encode_in_background": False})}
        )
        inline = Emitter(inline_settings, replay_on_start=False)
        try:
            with run_context(
                tenant_id="acme", agent_id="planner", agent_version="1.4.0", user_id="u-17"
            ):

                def helper_inline() -> None:
                    with inline.tool_call("search", params=params) as call:
                        call.result_summary = "3 results"

                for _ in range(warmup):
                    helper_inline()
                inline_timing = _time_each("helper, encode on caller", [helper_inline] * n)
                rate_inline = _throughput(inline, helper_inline, n)
        finally:
            inline.close(closing_s)
        emit_timing = _time_emit(settings, None, models, warmup, "emit(model)")
        plain_timing = _time_emit(settings, None, models, warmup, "emit(model), no redaction")
        disk_timing = _time_emit(settings, Path(scratch) / "disk", models, warmup, "disk", 100)
        n_sync = max(200, n // 20)
        sync_timing = _time_emit(
            settings, Path(scratch) / "sync", models[: warmup + n_sync], warmup, "fsync", 0
        )
        raw.purge(in_queue=True, in_flight=True, blocking=False)
        raw.flush(0)
    return EmitBench(
        helper_timing,
        emit_timing,
        raw_timing,
        bootstrap or "none (closed port)",
        disk_timing,
        sync_timing,
        plain_timing,
        inline_timing,
        rate,
        rate_inline,
        paced,
        raw_paced,
    )


def _samples(calls: list[Callable[[], object]]) -> list[float]:
    """Each call's duration in µs (garbage collection off meanwhile)."""
    clock = time.perf_counter_ns
    samples: list[float] = []
    append = samples.append
    gc.collect()
    gc.disable()
    try:
        for call in calls:
            start = clock()
            call()
            append((clock() - start) / 1000)
    finally:
        gc.enable()
    return samples


def _timing(name: str, samples: list[float]) -> Timing:
    ordered = sorted(samples)
    return Timing(
        name,
        len(ordered),
        _percentile(ordered, 0.50),
        _percentile(ordered, 0.99),
        statistics.fmean(ordered),
    )


def _time_each(name: str, calls: list[Callable[[], object]]) -> Timing:
    return _timing(name, _samples(calls))


def _time_paired(
    loops: list[tuple[str, Callable[[], object], Callable[[], object]]], n: int, block: int
) -> list[Timing]:
    """Time ``n`` calls of each loop in alternating blocks of ``block`` calls, so a figure
    and its baseline see the same load (a shared machine's load drifts by the minute);
    each loop's third member runs untimed before each of its blocks."""
    samples: list[list[float]] = [[] for _ in loops]
    block = max(1, min(block, n))
    done = 0
    while done < n:
        size = min(block, n - done)
        for i, (_, call, before) in enumerate(loops):
            before()
            samples[i].extend(_samples([call] * size))
        done += size
    return [_timing(name, found) for (name, _, _), found in zip(loops, samples, strict=True)]


def _time_paced(
    loops: list[tuple[str, Callable[[], object]]], n: int, pause_s: float
) -> list[Timing]:
    """``n`` calls of each loop, each call after the thread waited ``pause_s`` in a
    blocking call (the GIL free meanwhile: an agent's I/O); the loops take turns call by
    call (the same conditions for each)."""
    clock = time.perf_counter_ns
    sleep = time.sleep
    samples: list[list[float]] = [[] for _ in loops]
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            for i, (_, call) in enumerate(loops):
                sleep(pause_s)
                start = clock()
                call()
                samples[i].append((clock() - start) / 1000)
    finally:
        gc.enable()
    return [_timing(name, found) for (name, _), found in zip(loops, samples, strict=True)]


def _settled(emitter: Any) -> None:
    """Wait until the encoder thread has handed every event to the producer."""
    while emitter.stats().encoding:
        time.sleep(0.001)


def _throughput(emitter: Any, helper: Callable[[], None], n: int) -> float:
    """Events/s of ``n`` helper calls, until each is in the producer's queue."""
    _settled(emitter)
    start = time.perf_counter()
    for _ in range(n):
        helper()
    _settled(emitter)
    return n / (time.perf_counter() - start)


def _time_emit(
    settings: Any,
    spool_dir: Path | None,
    models: list[Any],
    warmup: int,
    name: str,
    fsync_ms: int = 100,
) -> Timing:
    """``emit(model)`` timed from an Emitter of its own: the default one, one without
    redaction (``name`` says so), or with ``durability = "disk"`` (a ``spool_dir``; the
    log fsynced every ``fsync_ms``, 0: before ``emit`` returns)."""
    from agentstream import Emitter

    es = settings.emitter
    if spool_dir is not None:
        es = es.model_copy(
            update={"durability": "disk", "wal_fsync_interval_ms": fsync_ms, "spool_dir": spool_dir}
        )
        name = "emit(model), disk" if fsync_ms else "emit(model), disk+fsync"
    redactor = None if "no redaction" in name else True
    emitter = Emitter(
        settings.model_copy(update={"emitter": es}), replay_on_start=False, redactor=redactor
    )
    try:
        for model in models[:warmup]:
            emitter.emit(model)
        _settled(emitter)
        return _time_each(name, [partial(emitter.emit, m) for m in models[warmup:]])
    finally:
        emitter.close(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--bootstrap", help="a broker to deliver to (default: none)")
    parser.add_argument("-n", type=int, default=20_000, help="timed calls per loop")
    args = parser.parse_args(argv)
    result = measure_emit_overhead(args.bootstrap, n=args.n)
    print(f"broker: {result.broker}; GIL switch interval {sys.getswitchinterval() * 1000:.1f} ms")
    for timing in (
        result.helper,
        result.helper_paced,
        result.raw_paced,
        result.helper_inline,
        result.emit_model,
        result.emit_unredacted,
        result.emit_disk,
        result.emit_disk_fsync,
        result.raw_produce,
    ):
        if timing is None:
            continue
        print(
            f"{timing.name:<24} p50 {timing.p50_us:7.1f} us   p99 {timing.p99_us:7.1f} us   "
            f"mean {timing.mean_us:7.1f} us   (n={timing.n})"
        )
    print(f"helper p50 / raw produce p50: x{result.ratio:.1f}  (target: helper p50 <= 10 us)")
    if result.helper_inline is not None and result.raw_produce.p50_us:
        before = result.helper_inline.p50_us / result.raw_produce.p50_us
        print(f"helper with encoding on the caller p50 / raw produce p50: x{before:.1f}")
    print(
        f"throughput until in the producer's queue: {result.throughput:,.0f} events/s "
        f"(encoding on the caller: {result.throughput_inline:,.0f} events/s)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
