"""Redaction: recall and precision on the labelled corpus, and its cost per event.

* recall — positives of ``tests/support/redaction_corpus.py`` with nothing left of
  the secret; precision — of the texts changed, those that held something (a changed
  negative is a false positive);
* cost per event — what the Emitter's redaction step (``EmitterCore._redacted``) takes
  for one ToolCall's free text: the bench's clean event (the common case: one scan)
  and events carrying each corpus text as ``result_summary`` (p50 and mean, µs).
  With the default memory durability this runs on the encoder thread, not the
  agent's: it bounds the encoder's throughput (``bench._emit`` prints both), while
  ``emit(model)`` with and without redaction show what the agent's thread pays;
* the sink's screen of a batch column (``Redactor.screen``, one pass over 5,000
  values) beside the per-value screen (``may_match`` on each) of the same values:
  ns per value, best of 5 (a clean column: the bench's tool-call texts; a mixed one:
  those with every corpus text among them).

Run it with ``python -m bench._redaction``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["RedactionBench", "measure_redaction"]


@dataclass(frozen=True)
class RedactionBench:
    positives: int
    negatives: int
    recall: float
    precision: float
    #: µs per event, the bench's clean ToolCall
    clean_p50_us: float
    #: µs per event, ToolCalls carrying the corpus texts
    corpus_p50_us: float
    corpus_mean_us: float
    #: ns per value: (column screen, per-value screen) on a clean and on a mixed column
    screen_clean_ns: tuple[float, float] = (float("nan"), float("nan"))
    screen_mixed_ns: tuple[float, float] = (float("nan"), float("nan"))


def _time(call: Any, data: dict[str, Any], repeat: int) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    for _ in range(repeat):
        start = clock()
        call(data)
        out.append((clock() - start) / 1000)
    return out


def _screen_ns(redactor: Any, column: list[str]) -> tuple[float, float]:
    """ns per value of ``redactor.screen(column)`` and of ``may_match`` on each value."""
    clock = time.perf_counter_ns
    column_best = value_best = float("inf")
    for _ in range(5):
        start = clock()
        redactor.screen(column)
        column_best = min(column_best, clock() - start)
        start = clock()
        [redactor.may_match(value) for value in column]
        value_best = min(value_best, clock() - start)
    return column_best / len(column), value_best / len(column)


def measure_redaction(repeat: int = 2_000) -> RedactionBench:
    from agentstream.core.config import load_settings
    from agentstream.core.redact import Redactor
    from agentstream.schemas import ToolCall
    from agentstream.testing import InMemoryEmitter
    from tests.support.redaction_corpus import NEGATIVES, POSITIVES, score

    redactor = Redactor()
    result = score(redactor.text, redactor.json_text)
    emitter = InMemoryEmitter(load_settings())
    step = emitter._redacted
    clean = {"params": {"q": "weather in paris", "limit": 10}, "result_summary": "3 results"}

    def redact(data: dict[str, Any]) -> None:
        step(ToolCall, data)

    for _ in range(200):
        redact(clean)
    clean_times = sorted(_time(redact, clean, repeat))
    texts = [p.text for p in POSITIVES] + NEGATIVES
    corpus_times: list[float] = []
    clock = time.perf_counter_ns
    for text in texts:  # warm: libphonenumber's metadata is loaded on first use
        redact({"params": "{}", "result_summary": text})
    for _ in range(max(1, repeat // len(texts))):
        for text in texts:
            data = {"params": "{}", "result_summary": text}
            start = clock()
            redact(data)
            corpus_times.append((clock() - start) / 1000)
    corpus_times.sort()
    clean_column = [
        text
        for i in range(2_500)
        for text in (f'{{"query": "find the nearest store to {i % 997}"}}', f"{i % 7} results")
    ]
    mixed = [*clean_column[: 5_000 - len(texts)], *texts]
    return RedactionBench(
        result.positives,
        result.negatives,
        result.recall,
        result.precision,
        clean_times[len(clean_times) // 2],
        corpus_times[len(corpus_times) // 2],
        statistics.fmean(corpus_times),
        _screen_ns(redactor, clean_column),
        _screen_ns(redactor, mixed),
    )


def main() -> int:
    r = measure_redaction()
    print(f"corpus: {r.positives} positives, {r.negatives} negatives")
    print(f"recall {r.recall:.1%}   precision {r.precision:.1%}")
    print(f"redaction per event: clean p50 {r.clean_p50_us:.2f} us")
    print(
        f"redaction per event: corpus p50 {r.corpus_p50_us:.1f} us, mean {r.corpus_mean_us:.1f} us"
    )
    for name, (column, value) in (("clean", r.screen_clean_ns), ("mixed", r.screen_mixed_ns)):
        print(
            f"sink screen, {name} column of 5,000: {column:.0f} ns/value "
            f"(per-value screen {value:.0f} ns/value, {value / column:.1f}x)"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
