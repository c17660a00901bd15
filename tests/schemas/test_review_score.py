"""ReviewDecision v3: the reviewer's score (1-5, optional); v1 and v2 data still read."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from agentstream.schemas import (
    RECORD_TYPES,
    SINGLE_OBJECT_MAGIC,
    EventValidationError,
    ReviewDecision,
    decode,
    decode_model,
    encode_model,
)
from tests.support import records


def _written_with(version: int, datum: dict[str, Any]) -> bytes:
    writer = next(v for v in RECORD_TYPES["ReviewDecision"].history if v.version == version)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, writer.parsed, datum)
    return SINGLE_OBJECT_MAGIC + writer.fingerprint + out.getvalue()


def _review(**extra: Any) -> ReviewDecision:
    return ReviewDecision(**records.CONTEXT, reviewer="alice", decision="APPROVED", **extra)


@pytest.mark.parametrize("version", [1, 2])
def test_data_written_before_score_reads_with_no_score(version: int) -> None:
    fields = {
        f["name"] for f in RECORD_TYPES["ReviewDecision"].history[version - 1].schema["fields"]
    }
    assert "score" not in fields
    review = _review(comment="fine")
    datum = {k: v for k, v in review.to_avro().items() if k in fields}
    data = _written_with(version, datum)
    decoded = decode(data)
    assert decoded.writer_version == version
    assert decoded.record["score"] is None
    model = decode_model(data, ReviewDecision)
    assert model.score is None
    assert model.comment == "fine"
    assert model.decision == review.decision


@pytest.mark.parametrize("score", [1, 3, 5])
def test_score_round_trips(score: int) -> None:
    review = _review(score=score)
    assert decode_model(encode_model(review), ReviewDecision).score == score


@pytest.mark.parametrize("score", [0, 6, -1])
def test_score_out_of_range_names_the_field(score: int) -> None:
    with pytest.raises(EventValidationError, match=r"ReviewDecision\.score"):
        _review(score=score)
