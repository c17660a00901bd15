"""The latency sketch: quantile accuracy against sorted values, exact merges, the byte format.

Quantile definition (ddsketch's): the *lower* quantile, the value at 0-based
rank ``floor(q * (n - 1))`` of the sorted values. The sketch must return it
within the relative accuracy alpha.
"""

from __future__ import annotations

import json
import math
import random
import struct

import pytest
from ddsketch import DDSketch

from agentstream.core.errors import CodecError
from agentstream.processors.rollups import LatencySketch, mapping_for

QS = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)


def exact_lower_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def within(estimate: float | None, exact: float, alpha: float) -> bool:
    assert estimate is not None
    return abs(estimate - exact) <= alpha * exact * (1 + 1e-9)


def sample(rng: random.Random, kind: str, n: int) -> list[float]:
    if kind == "lognormal":
        return [rng.lognormvariate(5.0, 1.5) for _ in range(n)]
    if kind == "uniform":
        return [rng.uniform(0.01, 60_000.0) for _ in range(n)]
    if kind == "bimodal":
        return [rng.gauss(40, 5) if rng.random() < 0.9 else rng.gauss(9000, 800) for _ in range(n)]
    # sub-millisecond values (negative bin keys) and exact zeros
    return [0.0 if rng.random() < 0.1 else rng.uniform(0.0001, 2.0) for _ in range(n)]


@pytest.mark.parametrize("alpha", [0.01, 0.02, 0.05])
@pytest.mark.parametrize("kind", ["lognormal", "uniform", "bimodal", "tiny"])
def test_quantiles_within_relative_accuracy(alpha: float, kind: str) -> None:
    rng = random.Random(f"{alpha}-{kind}")
    values = [abs(v) for v in sample(rng, kind, 5000)]
    sketch = LatencySketch(alpha)
    for v in values:
        sketch.add(v)
    assert sketch.count == len(values)
    for q, estimate in zip(QS, sketch.quantiles(QS), strict=True):
        exact = exact_lower_quantile(values, q)
        assert within(estimate, exact, alpha), (q, estimate, exact)


def test_quantiles_equal_ddsketch_fed_directly() -> None:
    rng = random.Random(3)
    values = sample(rng, "lognormal", 3000) + [0.0] * 7
    direct = DDSketch(0.01)
    ours = LatencySketch(0.01)
    for v in values:
        direct.add(v)
        ours.add(v)
    assert ours.quantiles(QS) == [direct.get_quantile_value(q) for q in QS]


def test_bin_representatives_map_back_to_their_bin() -> None:
    mapping = mapping_for(0.01)
    lo, hi = mapping.key(1e-4), mapping.key(1e8)
    assert all(mapping.key(mapping.value(k)) == k for k in range(lo, hi + 1))


def test_merge_is_exact_whatever_the_split() -> None:
    rng = random.Random(11)
    values = sample(rng, "bimodal", 4000) + [0.0] * 3
    whole = LatencySketch(0.01)
    for v in values:
        whole.add(abs(v))
    parts = [LatencySketch(0.01) for _ in range(60)]
    for v in values:
        parts[rng.randrange(60)].add(abs(v))
    merged = LatencySketch(0.01)
    for part in reversed(parts):
        merged.merge(part)
    assert merged == whole
    assert merged.to_bytes() == whole.to_bytes()
    assert merged.quantiles(QS) == whole.quantiles(QS)


def test_merge_refuses_another_accuracy() -> None:
    with pytest.raises(ValueError, match="relative accuracy"):
        LatencySketch(0.01).merge(LatencySketch(0.02))


def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        LatencySketch(0.01).add(-1.0)


@pytest.mark.parametrize("kind", ["lognormal", "tiny"])
def test_bytes_and_json_round_trip(kind: str) -> None:
    rng = random.Random(kind)
    sketch = LatencySketch(0.02)
    for v in sample(rng, kind, 2000):
        sketch.add(abs(v))
    data = sketch.to_bytes()
    assert LatencySketch.from_bytes(data) == sketch
    assert LatencySketch.from_json(json.loads(json.dumps(sketch.to_json()))) == sketch
    # compact: one byte of header, 8 of accuracy, then about 2-3 bytes per bin
    assert len(data) <= 16 + 3 * len(sketch.bins)


def test_empty_sketch() -> None:
    sketch = LatencySketch(0.01)
    assert sketch.count == 0
    assert sketch.quantiles((0.5, 0.99)) == [None, None]
    assert LatencySketch.from_bytes(sketch.to_bytes()) == sketch


def test_single_value_and_zero() -> None:
    one = LatencySketch(0.01)
    one.add(250.0)
    p50 = one.quantile(0.5)
    assert p50 is not None
    assert math.isclose(p50, 250.0, rel_tol=0.01)
    zero = LatencySketch(0.01)
    zero.add(0.0)
    assert zero.quantile(0.99) == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "unknown format"),
        (b"\x02" + bytes(8), "unknown format"),
        (b"\x01\x00\x00", "unknown format"),
        (b"\x01" + struct.pack("<d", 2.0) + b"\x00\x00", "relative accuracy"),
        (LatencySketch(0.01).to_bytes() + b"\x00", "after the last bin"),
        (LatencySketch(0.01).to_bytes()[:-1] + b"\x02\x02\x01\x00\x01", "not strictly ascending"),
        (LatencySketch(0.01).to_bytes()[:-1] + b"\x01\x02", "end inside a number"),
        (LatencySketch(0.01).to_bytes()[:-1] + b"\x01" + b"\xff" * 11, "longer than 64 bits"),
    ],
)
def test_bad_bytes_raise_codec_error(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        LatencySketch.from_bytes(data)
