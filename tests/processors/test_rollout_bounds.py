"""The rollout interval maths against scipy (tests only) and a published example."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from agentstream.core.errors import ConfigError
from agentstream.processors.rollouts import (
    newcombe,
    parse_guard,
    parse_guards,
    quantile_bounds,
    two_sided_z,
    wilson,
)
from agentstream.processors.rollups import LatencySketch


@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
def test_z_matches_scipy(confidence: float) -> None:
    assert two_sided_z(confidence) == pytest.approx(stats.norm.ppf(0.5 + confidence / 2), abs=1e-12)


@pytest.mark.parametrize(
    ("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (3, 300), (120, 4000), (999, 1000)]
)
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson(k, n, 0.95)
    assert low == pytest.approx(ci.low, abs=1e-12)
    assert high == pytest.approx(ci.high, abs=1e-12)


def test_newcombe_matches_the_published_example() -> None:
    """Newcombe (1998), Statistics in Medicine 17:873-890, example (a): 56/70 - 48/80,
    method 10: 0.0524 to 0.3339."""
    d, low, high = newcombe(56, 70, 48, 80)
    assert d == pytest.approx(56 / 70 - 48 / 80)
    assert round(low, 4) == 0.0524
    assert round(high, 4) == 0.3339


def test_newcombe_from_scipys_wilson_intervals() -> None:
    """The hybrid score formula over scipy's own Wilson intervals."""
    k1, n1, k2, n2 = 37, 900, 18, 1100
    a = stats.binomtest(k1, n1).proportion_ci(method="wilson")
    b = stats.binomtest(k2, n2).proportion_ci(method="wilson")
    p1, p2 = k1 / n1, k2 / n2
    expected_low = p1 - p2 - math.sqrt((p1 - a.low) ** 2 + (b.high - p2) ** 2)
    expected_high = p1 - p2 + math.sqrt((a.high - p1) ** 2 + (p2 - b.low) ** 2)
    _, low, high = newcombe(k1, n1, k2, n2)
    assert (low, high) == pytest.approx((expected_low, expected_high), abs=1e-12)


def test_newcombe_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    p1, p2, n = 0.03, 0.02, 800
    trials, covered = 600, 0
    for _ in range(trials):
        k1 = int(stats.binom.rvs(n, p1, random_state=rng.randrange(2**31)))
        k2 = int(stats.binom.rvs(n, p2, random_state=rng.randrange(2**31)))
        _, low, high = newcombe(k1, n, k2, n)
        covered += low <= p1 - p2 <= high
    # binomial interval of the coverage count around 95 % (99.9 %)
    lo, _ = stats.binom.interval(0.999, trials, 0.95)
    assert covered >= lo


def test_quantile_bounds_cover_the_true_p95() -> None:
    """Lognormal latencies: the true p95 is scipy's; the sketch bound covers it about as
    often as its confidence says (at least, within the binomial interval)."""
    dist = stats.lognorm(s=0.6, scale=150.0)
    truth = float(dist.ppf(0.95))
    trials, covered = 300, 0
    for seed in range(trials):
        values = dist.rvs(size=400, random_state=seed)
        sketch = LatencySketch(0.01)
        for v in values:
            sketch.add(float(v))
        bounds = quantile_bounds(sketch, 0.95)
        assert bounds is not None
        _, low, high = bounds
        covered += low <= truth <= high
    lo, _ = stats.binom.interval(0.999, trials, 0.95)
    assert covered >= lo


def test_quantile_bounds_contain_the_exact_order_statistic_interval() -> None:
    values = sorted(stats.lognorm(s=0.5, scale=100.0).rvs(size=2000, random_state=3))
    sketch = LatencySketch(0.01)
    for v in values:
        sketch.add(float(v))
    bounds = quantile_bounds(sketch, 0.95)
    assert bounds is not None
    _, low, high = bounds
    n = len(values)
    # exact distribution-free ranks from the binomial, less one rank for the normal approximation
    r_lo = int(stats.binom.ppf(0.025, n, 0.95)) + 1
    r_hi = int(stats.binom.ppf(0.975, n, 0.95)) - 1
    assert low <= values[r_lo - 1]
    assert high >= values[r_hi - 1]
    assert quantile_bounds(LatencySketch(0.01), 0.95) is None


def test_guards_parse_into_typed_models() -> None:
    g = parse_guard("error_rate <= +1pp")
    assert (g.metric.name, g.op, g.amount, g.unit) == ("error_rate", "<=", 1.0, "pp")
    g = parse_guard("  p95_latency<=10%")
    assert (g.metric.name, g.amount, g.unit, str(g)) == (
        "p95_latency",
        10.0,
        "%",
        "p95_latency <= +10%",
    )
    assert parse_guard("completion_rate >= -2.5pp").amount == -2.5


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["error_rate < 1pp"], r"guards\[0\]: cannot read"),
        (["error_rate <= 1pp", "latency <= 10%"], r"guards\[1\]: unknown metric 'latency'"),
        (["p95_latency <= +5pp"], r"guards\[0\]: p95_latency is not a rate"),
        ([], "at least one guard"),
    ],
)
def test_bad_guards_name_the_field(texts: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_guards(texts)
