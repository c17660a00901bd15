"""The soak's throughput: messages pushed through the whole pipeline under every fault.

Two short soaks (``agentstream soak``) on the bench's broker, same seed, same
duration and rate, so the same messages: one with every fault the bench's broker
allows (kill, clickhouse, backlog, duplicates, late, clock; the broker fault needs
a broker the soak starts itself, so it is left out here), and the same-run peer
with the same input (backlog, duplicates, late, clock) but no kill and no outage.
The figure is messages sent ÷ (first emit → pipeline drained), so what the kills
and the outage cost in recovery shows as fewer events/s. Both runs must also store
the truth: a soak with differences is reported as such, not as a speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentstream.devtools.soak import FAULTS, SoakOptions, differences, run_soak

__all__ = ["SoakBench", "bench_soak"]


@dataclass(frozen=True)
class SoakBench:
    faults_events_per_s: float
    clean_events_per_s: float
    #: figures that differ from the truth (both runs together): 0 when all is right
    differences: int
    duration_s: float


def bench_soak(bootstrap: str, workdir: Path, duration_s: float = 30.0) -> SoakBench:
    """Two soaks of ``duration_s`` on ``bootstrap``: every fault, then none."""
    faults = frozenset(FAULTS) - {"broker"}
    same_input = faults - {"kill", "clickhouse"}
    results = []
    for name, chosen in (("faults", faults), ("clean", same_input)):
        options = SoakOptions(
            duration_s=duration_s,
            seed=3,
            faults=chosen,
            bootstrap=bootstrap,
            home=workdir / f"soak-{name}",
        )
        results.append(run_soak(options, display=False))
    wrong = sum(len(differences(r.rows)) for r in results)
    return SoakBench(results[0].events_per_s, results[1].events_per_s, wrong, duration_s)
