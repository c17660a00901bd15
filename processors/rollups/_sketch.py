"""The mergeable latency sketch: ddsketch's logarithmic bins, a compact byte format.

A :class:`LatencySketch` is the store of a ``ddsketch.DDSketch`` with a
``LogarithmicMapping`` of the configured relative accuracy alpha: value ``v > 0``
falls in bin ``k = ceil(log_gamma v)`` with ``gamma = (1 + alpha) / (1 - alpha)``; zero goes to
the zero bucket. Bins hold integer counts, so merging two sketches (adding
their bins) is exact and associative: the 1 min sketch built from sixty 1 s
sketches is the very sketch built from the events, bit for bit.

Quantiles are ddsketch's own (:meth:`LatencySketch.to_ddsketch`): the *lower*
quantile, the value at 0-based rank ``floor(q * (n - 1))`` of the sorted values,
returned as the representative of its bin, so within a relative error alpha of the
exact value at that rank.

Byte format (``latency_sketch`` of a Rollup; all integers LEB128 varints)::

    0x01                      format version
    float64 little-endian     relative accuracy alpha
    varint                    zero-bucket count
    varint                    number n of non-empty bins
    zigzag varint, varint     first bin: key, count
    (varint, varint) * (n-1)  next bins in ascending key order: key - previous key, count

ddsketch's protobuf helpers would need ``protobuf``; this format needs nothing
and is smaller (a bin costs about 2 bytes).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from functools import lru_cache
from itertools import accumulate
from typing import TypedDict

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

from agentstream.core.errors import CodecError

__all__ = ["FORMAT_VERSION", "LatencySketch", "SketchJson", "mapping_for"]

FORMAT_VERSION = 1
_ACCURACY = struct.Struct("<d")


class SketchJson(TypedDict):
    """JSON-able sketch: relative accuracy, zero count, bin keys and their counts."""

    accuracy: float
    zero: int
    keys: list[int]
    counts: list[int]


@lru_cache(maxsize=16)
def mapping_for(relative_accuracy: float) -> LogarithmicMapping:
    """ddsketch's logarithmic mapping for ``relative_accuracy`` (shared, read-only)."""
    return LogarithmicMapping(relative_accuracy)


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0x80:
        out.append(value)
        return
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise CodecError("latency sketch bytes end inside a number")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise CodecError("latency sketch bytes hold a number longer than 64 bits")


class LatencySketch:
    """Integer bin counts of ddsketch's logarithmic mapping, plus the zero bucket."""

    __slots__ = ("_mapping", "bins", "zero")

    def __init__(
        self, relative_accuracy: float, bins: Mapping[int, int] | None = None, zero: int = 0
    ) -> None:
        self._mapping = mapping_for(relative_accuracy)
        self.bins: dict[int, int] = {k: c for k, c in (bins or {}).items() if c}
        self.zero = zero

    @classmethod
    def wrap(cls, relative_accuracy: float, bins: dict[int, int], zero: int = 0) -> LatencySketch:
        """A sketch over ``bins`` itself (no copy: later changes show through both)."""
        sketch = cls(relative_accuracy, None, zero)
        sketch.bins = bins
        return sketch

    @property
    def relative_accuracy(self) -> float:
        """The relative accuracy alpha the sketch guarantees for its quantiles."""
        return float(self._mapping.relative_accuracy)

    @property
    def count(self) -> int:
        """How many values the sketch holds."""
        return self.zero + sum(self.bins.values())

    def key(self, value: float) -> int | None:
        """The bin of ``value`` (None: the zero bucket)."""
        if value > self._mapping.min_possible:
            return int(self._mapping.key(value))
        return None

    def add(self, value: float) -> None:
        """Add one value (a latency in ms; must not be negative)."""
        if value < 0:
            raise ValueError(f"latency must not be negative, got {value!r}")
        key = self.key(value)
        if key is None:
            self.zero += 1
        else:
            self.bins[key] = self.bins.get(key, 0) + 1

    def merge(self, other: LatencySketch) -> None:
        """Add ``other``'s values to this sketch (same relative accuracy only)."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                f"cannot merge latency sketches of relative accuracy "
                f"{self.relative_accuracy} and {other.relative_accuracy}"
            )
        bins = self.bins
        for key, count in other.bins.items():
            bins[key] = bins.get(key, 0) + count
        self.zero += other.zero

    def to_ddsketch(self) -> DDSketch:
        """The equivalent ``ddsketch.DDSketch`` (its quantiles are the ones reported)."""
        sketch = DDSketch(self.relative_accuracy)
        value = self._mapping.value
        for key in sorted(self.bins):
            # a bin's representative value maps back to the same bin
            sketch.add(value(key), float(self.bins[key]))
        if self.zero:
            sketch.add(0.0, float(self.zero))
        return sketch

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """ddsketch's (lower) quantiles, None for an empty sketch.

        Computed here the way ``DDSketch.get_quantile_value`` does (rank
        ``q * (n - 1)``, the first bin whose running count exceeds it), without
        building a DDSketch; a test keeps the two identical.
        """
        keys = sorted(self.bins)
        running = list(accumulate(self.bins[k] for k in keys))
        total = self.zero + (running[-1] if running else 0)
        out: list[float | None] = []
        for q in qs:
            if total == 0 or not 0 <= q <= 1:
                out.append(None)
                continue
            rank = q * (total - 1)
            if rank < self.zero:
                out.append(0.0)
                continue
            index = bisect_right(running, rank - self.zero)
            out.append(float(self._mapping.value(keys[min(index, len(keys) - 1)])))
        return out

    def quantile(self, q: float) -> float | None:
        """One quantile (see :meth:`quantiles`)."""
        return self.quantiles((q,))[0]

    def to_bytes(self) -> bytes:
        """The compact byte form (module docstring)."""
        out = bytearray((FORMAT_VERSION,))
        out += _ACCURACY.pack(self.relative_accuracy)
        put = _put_varint
        put(out, self.zero)
        bins = self.bins
        keys = sorted(k for k, c in bins.items() if c)
        put(out, len(keys))
        if keys:
            first = keys[0]
            put(out, (first << 1) ^ (first >> 63))  # zigzag
            put(out, bins[first])
            previous = first
            append = out.append
            for key in keys[1:]:
                delta, count = key - previous, bins[key]
                if delta < 0x80 and count < 0x80:
                    append(delta)
                    append(count)
                else:
                    put(out, delta)
                    put(out, count)
                previous = key
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> LatencySketch:
        """Read :meth:`to_bytes`; bad bytes raise :class:`~agentstream.core.errors.CodecError`."""
        if len(data) < 1 + _ACCURACY.size or data[0] != FORMAT_VERSION:
            version = data[0] if data else None
            raise CodecError(f"latency sketch: unknown format (first byte {version!r})")
        (accuracy,) = _ACCURACY.unpack_from(data, 1)
        if not 0 < accuracy < 1:
            raise CodecError(f"latency sketch: relative accuracy {accuracy!r} not in (0, 1)")
        pos = 1 + _ACCURACY.size
        zero, pos = _get_varint(data, pos)
        n, pos = _get_varint(data, pos)
        bins: dict[int, int] = {}
        key = 0
        for i in range(n):
            raw, pos = _get_varint(data, pos)
            if i == 0:
                key = (raw >> 1) ^ -(raw & 1)
            elif raw == 0:
                raise CodecError("latency sketch: bin keys not strictly ascending")
            else:
                key += raw
            bins[key], pos = _get_varint(data, pos)
        if pos != len(data):
            raise CodecError(f"latency sketch: {len(data) - pos} bytes after the last bin")
        return cls(accuracy, bins, zero)

    def to_json(self) -> SketchJson:
        """The JSON-able form (for a table value)."""
        keys = sorted(self.bins)
        return {
            "accuracy": self.relative_accuracy,
            "zero": self.zero,
            "keys": keys,
            "counts": [self.bins[k] for k in keys],
        }

    @classmethod
    def from_json(cls, data: SketchJson) -> LatencySketch:
        """Read :meth:`to_json`."""
        return cls(
            data["accuracy"], dict(zip(data["keys"], data["counts"], strict=True)), data["zero"]
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencySketch):
            return NotImplemented
        return (
            self.relative_accuracy == other.relative_accuracy
            and self.zero == other.zero
            and self.bins == other.bins
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LatencySketch(alpha={self.relative_accuracy}, count={self.count})"
