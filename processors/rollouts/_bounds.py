"""Confidence bounds for the rollout guards, from the figures rollups carry.

* :func:`wilson` — the Wilson score interval of a proportion (Wilson 1927), no continuity
  correction (the same as scipy's ``binomtest(...).proportion_ci(method="wilson")``).
* :func:`newcombe` — the interval of a difference of two independent proportions
  p1 - p2 from their Wilson intervals (Newcombe 1998, method 10, the "hybrid score").
* :func:`quantile_bounds` — a distribution-free interval for a quantile from a mergeable
  latency sketch: the ranks ``n q -/+ z sqrt(n q (1-q))`` (normal approximation of the
  binomial count of values below the quantile), read from the sketch and widened by its
  relative accuracy on each side.

Hand-written because no light library fits: statsmodels has the proportion intervals but
pulls pandas and patsy into the worker, and scipy has no Newcombe interval and nothing for
sketches; the normal quantile comes from the standard library (``statistics.NormalDist``).
The tests check each against scipy.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from agentstream.processors.rollups import LatencySketch

__all__ = ["newcombe", "quantile_bounds", "two_sided_z", "wilson"]


def two_sided_z(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence`` (0.95 → 1.95996…)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / n``; (0, 1) when ``n`` is 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    z = two_sided_z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(
    k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``(d, low, high)``: the difference ``k1/n1 - k2/n2`` and its Newcombe hybrid score
    interval; both ``n`` must be positive."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("newcombe: both samples need at least one observation")
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, confidence)
    l2, u2 = wilson(k2, n2, confidence)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, low, high


def quantile_bounds(
    sketch: LatencySketch, q: float, confidence: float = 0.95
) -> tuple[float, float, float] | None:
    """``(estimate, low, high)`` for the ``q`` quantile of the values in ``sketch``; None
    when it is empty.

    The rank interval is the normal approximation of the binomial count of values below
    the quantile; each end is the sketch's value at that rank, widened by the sketch's
    relative accuracy ``a`` (``low * (1 - a)``, ``high * (1 + a)``), so the interval covers
    the true order statistics, not just the sketch's representatives.
    """
    n = sketch.count
    if n == 0:
        return None
    if not 0 < q < 1:
        raise ValueError(f"quantile must be in (0, 1), got {q!r}")
    z = two_sided_z(confidence)
    spread = z * math.sqrt(q * (1 - q) / n)
    values = sketch.quantiles((q, max(0.0, q - spread), min(1.0, q + spread)))
    estimate, low, high = (v if v is not None else 0.0 for v in values)
    a = sketch.relative_accuracy
    return estimate, low * (1 - a), high * (1 + a)
