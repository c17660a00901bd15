"""The statistics of comparisons, in one place: what the engine does not compute.

ClickHouse runs the tests that fit it (``proportionsZTest`` for rates, ``welchTTest`` for
means; see :mod:`._compare`); this module holds the rest, in pure Python (the standard
library's :class:`statistics.NormalDist`, no numpy in the worker install):

* :func:`quantile` — the inclusive (R7, NumPy ``linear``) quantile, ClickHouse's
  ``quantileExactInclusive``;
* :func:`bootstrap_quantile_difference` — a percentile bootstrap of the difference of a
  quantile between two sides, resampling **runs** (a run's calls are correlated, so the run
  is the unit that is drawn, with all its latencies), with a seeded generator;
* :func:`proportion_power` / :func:`mean_power` / :func:`detectable_from_se` — the power
  calculation behind the small-sample warning: how many runs per side a difference of
  ``mde`` needs to be detected at the given power, and the smallest difference the sample
  at hand can detect.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "BootstrapResult",
    "PowerResult",
    "bootstrap_quantile_difference",
    "detectable_from_se",
    "mean_power",
    "proportion_power",
    "quantile",
    "z_value",
]

_NORMAL = NormalDist()


def z_value(probability: float) -> float:
    """The standard normal quantile at ``probability``."""
    return _NORMAL.inv_cdf(probability)


def quantile(values: Sequence[float], level: float) -> float:
    """Inclusive quantile of ``values`` (linear between closest ranks); ``values`` sorted."""
    if not values:
        raise ValueError("quantile of no values")
    h = (len(values) - 1) * level
    lo = math.floor(h)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (h - lo) * (values[hi] - values[lo])


@dataclass(frozen=True)
class BootstrapResult:
    """A bootstrap of ``statistic(b) - statistic(a)``."""

    a: float
    b: float
    difference: float
    ci_low: float
    ci_high: float
    #: two-sided: twice the smaller share of resampled differences on either side of 0
    p_value: float
    #: standard deviation of the resampled differences (the difference's standard error)
    se: float
    iterations: int


def _pooled_quantile(runs: Sequence[Sequence[float]], level: float) -> float:
    values = sorted(v for run in runs for v in run)
    return quantile(values, level)


def bootstrap_quantile_difference(
    a_runs: Sequence[Sequence[float]],
    b_runs: Sequence[Sequence[float]],
    *,
    level: float,
    confidence: float,
    iterations: int,
    seed: int,
) -> BootstrapResult:
    """Percentile bootstrap of quantile ``level`` of side b minus side a.

    Each side is a list of runs, each run the list of its values (latencies). A resample
    draws as many runs as the side has, with replacement, and pools their values.
    """
    a_runs = [run for run in a_runs if run]
    b_runs = [run for run in b_runs if run]
    if not a_runs or not b_runs:
        raise ValueError("each side needs at least one run with values")
    rng = random.Random(seed)
    a_point = _pooled_quantile(a_runs, level)
    b_point = _pooled_quantile(b_runs, level)
    diffs: list[float] = []
    na, nb = len(a_runs), len(b_runs)
    for _ in range(iterations):
        ra = [a_runs[i] for i in rng.choices(range(na), k=na)]
        rb = [b_runs[i] for i in rng.choices(range(nb), k=nb)]
        diffs.append(_pooled_quantile(rb, level) - _pooled_quantile(ra, level))
    diffs.sort()
    alpha = 1 - confidence
    below = sum(1 for d in diffs if d <= 0)
    above = sum(1 for d in diffs if d >= 0)
    p_value = min(1.0, 2 * (min(below, above) + 1) / (iterations + 1))
    mean = sum(diffs) / iterations
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (iterations - 1))
    return BootstrapResult(
        a_point,
        b_point,
        b_point - a_point,
        quantile(diffs, alpha / 2),
        quantile(diffs, 1 - alpha / 2),
        p_value,
        se,
        iterations,
    )


@dataclass(frozen=True)
class PowerResult:
    """What a sample can detect: the smallest difference, and the runs ``mde`` needs."""

    #: smallest difference (in the metric's unit) detectable with the sample at hand
    detectable: float | None
    #: the difference asked for (``--mde``), if any
    mde: float | None
    #: runs each side needs to detect ``mde`` (None without ``mde``)
    runs_needed: int | None
    #: runs the smaller side has
    runs_have: int

    @property
    def underpowered(self) -> bool:
        """True when ``mde`` was asked for and the smaller side has fewer runs than needed."""
        return self.runs_needed is not None and self.runs_have < self.runs_needed


def _z_sum(confidence: float, power: float) -> tuple[float, float]:
    return z_value(1 - (1 - confidence) / 2), z_value(power)


def proportion_power(
    p_a: float, n_a: int, n_b: int, mde: float | None, *, confidence: float, power: float
) -> PowerResult:
    """Power of a two-sided two-proportion z-test from baseline rate ``p_a``.

    Runs needed per side (equal sides) to detect ``p_b = p_a ± mde``:
    ``(z_alpha·√(2·p̄·q̄) + z_beta·√(p_a·q_a + p_b·q_b))² / mde²`` with ``p̄`` the mean of the two
    rates (the normal-approximation formula, Fleiss' without the continuity correction);
    the direction is the harder one (towards 0.5).
    The detectable difference is ``(z_alpha + z_beta)·√(p_a·q_a·(1/n_a + 1/n_b))``.
    """
    z_alpha, z_beta = _z_sum(confidence, power)
    have = min(n_a, n_b)
    detectable = None
    if n_a > 0 and n_b > 0:
        detectable = (z_alpha + z_beta) * math.sqrt(p_a * (1 - p_a) * (1 / n_a + 1 / n_b))
    needed = None
    if mde is not None and mde > 0:
        needed = max(
            _proportion_runs(p_a, min(1.0, p_a + mde), z_alpha, z_beta),
            _proportion_runs(p_a, max(0.0, p_a - mde), z_alpha, z_beta),
        )
    return PowerResult(detectable, mde, needed, have)


def _proportion_runs(p_a: float, p_b: float, z_alpha: float, z_beta: float) -> int:
    delta = abs(p_b - p_a)
    if delta == 0:
        return 0
    p_bar = (p_a + p_b) / 2
    root = z_alpha * math.sqrt(2 * p_bar * (1 - p_bar)) + z_beta * math.sqrt(
        p_a * (1 - p_a) + p_b * (1 - p_b)
    )
    return math.ceil(root**2 / delta**2)


def mean_power(
    var_a: float,
    var_b: float,
    n_a: int,
    n_b: int,
    mde: float | None,
    *,
    confidence: float,
    power: float,
) -> PowerResult:
    """Power of a two-sided Welch test (normal approximation): runs needed per side to detect
    ``mde`` are ``(z_alpha + z_beta)²·(s_a² + s_b²) / mde²``; detectable is
    ``(z_alpha + z_beta)·√(s_a²/n_a + s_b²/n_b)``."""
    z_alpha, z_beta = _z_sum(confidence, power)
    detectable = None
    if n_a > 0 and n_b > 0:
        detectable = (z_alpha + z_beta) * math.sqrt(var_a / n_a + var_b / n_b)
    needed = None
    if mde is not None and mde > 0:
        needed = math.ceil((z_alpha + z_beta) ** 2 * (var_a + var_b) / mde**2)
    return PowerResult(detectable, mde, needed, min(n_a, n_b))


def detectable_from_se(
    se: float, n_a: int, n_b: int, mde: float | None, *, confidence: float, power: float
) -> PowerResult:
    """Power from a difference's standard error (a bootstrap's): detectable is
    ``(z_alpha + z_beta)·se``; the standard error shrinks as ``1/√n``, so ``mde`` needs
    ``n·(detectable / mde)²`` runs per side (n: the smaller side)."""
    z_alpha, z_beta = _z_sum(confidence, power)
    detectable = (z_alpha + z_beta) * se
    have = min(n_a, n_b)
    needed = None
    if mde is not None and mde > 0:
        needed = math.ceil(have * (detectable / mde) ** 2)
    return PowerResult(detectable, mde, needed, have)
