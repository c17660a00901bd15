"""The faults the soak injects while the live traffic runs (``--faults``)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentstream.core.config import load_settings
from agentstream.devtools.soak.fleet import Fleet, Status
from agentstream.devtools.soak.options import SoakOptions

__all__ = ["Fault", "broker", "inject", "schedule"]


@dataclass(frozen=True)
class Fault:
    at_s: float
    name: str
    index: int = 0


def schedule(options: SoakOptions, rng: random.Random) -> list[Fault]:
    d = options.duration_s
    faults: list[Fault] = []
    rebalance = "rebalance" in options.faults and options.workers >= 2
    if "kill" in options.faults:
        # kill-and-restart never picks the worker that leaves for good
        pick = options.workers - 1 if rebalance else options.workers
        for _ in range(max(2, round(d / 40))):
            faults.append(Fault(rng.uniform(0.1, 0.85) * d, "kill", rng.randrange(pick)))
    if rebalance:
        # worker 0 holds the sink: the last one leaves, a new one joins later
        faults.append(Fault(rng.uniform(0.2, 0.35) * d, "rebalance", options.workers - 1))
        faults.append(Fault(rng.uniform(0.55, 0.7) * d, "rebalance", -1))
    if "broker" in options.faults:
        faults.append(Fault(rng.uniform(0.4, 0.6) * d, "broker"))
    if "clickhouse" in options.faults:
        faults.append(Fault(rng.uniform(0.15, 0.35) * d, "clickhouse"))
    return sorted(faults, key=lambda f: f.at_s)


@contextmanager
def broker(options: SoakOptions, home: Path, status: Status) -> Iterator[tuple[str, Any]]:
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


def inject(
    faults: list[Fault],
    began: float,
    fleet: Fleet,
    local: Any,
    options: SoakOptions,
    home: Path,
    status: Status,
) -> BaseException | None:
    """Inject ``faults`` (one kind, in order) at their moments after ``began``; the
    exception that stopped it, if any (the main thread reports it)."""
    try:
        for fault in faults:
            while time.monotonic() - began < fault.at_s:
                time.sleep(0.1)
            if fault.name == "kill":
                fleet.kill(fault.index)
                fleet.workers[fault.index].wait_ready(120, status)
                status.note(f"worker {fault.index} consuming again")
            elif fault.name == "rebalance" and fault.index >= 0:
                fleet.leave(fault.index)
            elif fault.name == "rebalance":
                fleet.join().wait_ready(180, status)
                status.note("the new worker is consuming")
            elif fault.name == "broker":
                if local is None:
                    status.note("broker fault skipped (not a broker the soak started)")
                    continue
                status.note("stopping the broker")
                local.stop()
                outage = min(10.0, 0.08 * options.duration_s)
                time.sleep(outage)  # the outage's length: a fault, not a wait
                local.start()
                status.note(f"broker back after {outage:.0f}s down")
            elif fault.name == "clickhouse":
                down = home / "clickhouse.down"
                down.write_text("fault injected by agentstream soak\n")
                status.note("ClickHouse unavailable (inserts fail)")
                outage = min(15.0, 0.12 * options.duration_s)
                time.sleep(outage)  # the outage's length
                down.unlink()
                status.note(f"ClickHouse back after {outage:.0f}s")
    except BaseException as exc:  # reported by the main thread
        status.note(f"fault thread failed: {exc}")
        return exc
    return None
