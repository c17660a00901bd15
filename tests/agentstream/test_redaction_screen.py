"""The column screen (``Redactor.screen``): never drops a value the per-value screen keeps."""

from __future__ import annotations

import ast
import inspect
import random

from agentstream.core.redact import Redactor
from agentstream.core.redact import _redactor as redactor_module
from agentstream.core.redact._screen import SCREEN_NEEDLES
from tests.support.redaction_corpus import NEGATIVES, POSITIVES

CLEAN = [
    '{"query": "find the nearest store to 17", "limit": 5}',
    "3 results",
    "the weather in Paris is mild",
    "",
    "İstanbul office, ΣΊΣΥΦΟΣ",  # lower() changes the length of these
    "two\nlines of text",
]


def _literals_tested_with_in() -> set[str]:
    """Every ``"literal" in ...`` of ``_may_hold``, read from its source."""
    tree = ast.parse(inspect.getsource(redactor_module._may_hold))
    found: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
            and any(isinstance(op, ast.In) for op in node.ops)
        ):
            found.add(node.left.value)
    return found


def test_the_needles_are_every_substring_the_value_screen_tests() -> None:
    gates = {"-", "_", "=", ":"}  # these only gate others; each gated needle is listed
    tested = _literals_tested_with_in()
    assert tested - gates
    assert tested - gates <= set(SCREEN_NEEDLES)


def test_the_screen_keeps_every_value_the_value_screen_keeps() -> None:
    redactor = Redactor()
    texts = [p.text for p in POSITIVES] + NEGATIVES + CLEAN
    rng = random.Random(15)
    for _ in range(20):
        rng.shuffle(texts)
        column = texts[: rng.randint(1, len(texts))]
        kept = set(redactor.screen(column))
        wanted = {i for i, text in enumerate(column) if text and redactor.may_match(text)}
        assert wanted <= kept
        assert redactor.screen(column) == sorted(kept)
    positives = [p.text for p in POSITIVES]
    assert redactor.screen(positives) == list(range(len(positives)))


def test_values_left_out_are_those_redaction_leaves_alone() -> None:
    redactor = Redactor()
    column = [*CLEAN, *NEGATIVES, *(p.text for p in POSITIVES)]
    kept = set(redactor.screen(column))
    for i, text in enumerate(column):
        if i not in kept:
            counts: dict[str, int] = {}
            assert redactor.text(text, counts) == text
            assert redactor.json_text(text, counts) == text
            assert counts == {}


def test_a_clean_column_has_no_candidate_and_digit_runs_are_found_per_value() -> None:
    redactor = Redactor()
    assert redactor.screen([]) == []
    assert redactor.screen(CLEAN * 50) == []
    column = ["order 12", "call +1 415 555 0100", "ok", "4111 1111 1111 1111", "done"]
    assert redactor.screen(column) == [1, 3]
    # a run cut by the separator is two short runs in two values: neither is a candidate
    assert redactor.screen(["call 415 555", "0100 x"]) == []


def test_extra_patterns_screen_nothing_out() -> None:
    redactor = Redactor(extra_patterns={"ticket": r"TKT-\d+"})
    assert redactor.screen(["a", "b", "TKT-1"]) == [0, 1, 2]


def test_text_arrow_cannot_hold_is_screened_value_by_value() -> None:
    redactor = Redactor()
    assert redactor.screen(["plain", "\ud800 bob@example.com", "\ud800 plain"]) == [1]


def test_missing_and_empty_values_are_no_candidates() -> None:
    column = [None, "", "bob@example.com", None, "\ud800 key", "\ud800"]
    assert Redactor().screen(column) == [2, 4]
    assert Redactor(extra_patterns={"ticket": r"TKT-\d+"}).screen(column) == [2, 4, 5]
    assert Redactor().screen([None, "", "bob@example.com", "ok", None]) == [2]  # Arrow's way
