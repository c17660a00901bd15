"""Which topic goes where, and the shape of the sink's own dead letters."""

from __future__ import annotations

from typing import Any

import pytest

from agentstream.core.config import TopicSettings
from agentstream.schemas import InvalidEvent, ReviewDecision, StateTransition, ToolCall
from agentstream.sinks.consumer import dead_letter, routes


def test_routes_cover_raw_and_processed_topics_but_not_raw_transitions() -> None:
    topics = TopicSettings(prefix="x.")
    table = routes(topics)
    assert set(table) == {
        "x.tool_calls",
        "x.model_calls",
        "x.reviews",
        "x.lifecycle",
        "x.invalid",
        "x.rollups",
        "x.alerts",
        "x.eval_results",
        "x.feedback",
    }
    assert "x.transitions" not in table  # lifecycle carries the validated ones
    assert table["x.lifecycle"].model is StateTransition
    assert table["x.reviews"].model is ReviewDecision
    assert {t: r.on_bad for t, r in table.items() if r.on_bad != "dead_letter"} == {
        "x.tool_calls": "skip",
        "x.model_calls": "skip",
        "x.reviews": "skip",
        "x.invalid": "drop",
    }
    assert routes(topics, ("tool_calls",))["x.tool_calls"].model is ToolCall
    with pytest.raises(ValueError, match="transitions"):
        routes(topics, ("transitions",))


def test_a_dead_letter_id_is_stable_for_the_same_record() -> None:
    fields: dict[str, Any] = {
        "topic": "agent.rollups",
        "partition": 2,
        "offset": 41,
        "key": b"k",
        "raw": b"\x00\x01",
        "reason": "sink cannot decode: truncated",
        "error_type": "CodecError",
    }
    first, again = dead_letter(**fields), dead_letter(**fields)
    other = dead_letter(**{**fields, "offset": 42})
    assert isinstance(first, InvalidEvent)
    assert first.invalid_id == again.invalid_id != other.invalid_id
    assert (first.source_topic, first.partition, first.offset) == ("agent.rollups", 2, 41)
    assert first.raw == b"\x00\x01"


def test_oversized_raw_bytes_are_truncated_and_said_so() -> None:
    letter = dead_letter(
        topic="t",
        partition=0,
        offset=0,
        key=None,
        raw=b"x" * (2 * 1024 * 1024),
        reason="too big",
        error_type="StorageRejected",
    )
    assert len(letter.raw) == 1024 * 1024
    assert "truncated" in letter.reason
