"""``agentstream soak``: the real worker under faults, compared with an independent truth.

* :mod:`.population` - the seeded population and when each event is produced;
* :mod:`.truth` - what must be stored, computed without the engine or the sink;
* :mod:`.compare` - the table (figure, truth, stored, difference);
* :mod:`.stored` - what ClickHouse holds, in the truth's terms;
* :mod:`.harness` - the run: population, workers, live traffic, drain, comparison;
* :mod:`.options`, :mod:`.fleet` (worker processes, display), :mod:`.faults`,
  :mod:`.wiring` (settings, group lags), :mod:`.arrivals` (the input's order).
"""

from agentstream.devtools.soak.compare import Row, Stored, compare, differences
from agentstream.devtools.soak.harness import SoakOptions, SoakResult, cleanup, run_soak
from agentstream.devtools.soak.population import (
    FAULTS,
    Planned,
    Population,
    PopulationConfig,
    generate,
    murmur2,
    partition_of,
)
from agentstream.devtools.soak.truth import Truth, compute_truth

__all__ = [
    "FAULTS",
    "Planned",
    "Population",
    "PopulationConfig",
    "Row",
    "SoakOptions",
    "SoakResult",
    "Stored",
    "Truth",
    "cleanup",
    "compare",
    "compute_truth",
    "differences",
    "generate",
    "murmur2",
    "partition_of",
    "run_soak",
]
