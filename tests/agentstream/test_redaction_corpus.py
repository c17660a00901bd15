"""The labelled corpus (tests/support/redaction_corpus.py): no leak, no damaged negative."""

from __future__ import annotations

import json
import sys

import pytest

from agentstream.core.redact import Redactor
from agentstream.schemas import ModelCall, ReviewDecision, ToolCall
from agentstream.testing import InMemoryEmitter
from tests.support.redaction_corpus import NEGATIVES, POSITIVES, score

KINDS = {p.kind for p in POSITIVES}


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def test_the_corpus_is_large_and_covers_every_kind(redactor: Redactor) -> None:
    assert len(POSITIVES) >= 200
    assert len(NEGATIVES) >= 200
    assert set(redactor.kinds) == KINDS
    assert len({p.text for p in POSITIVES}) == len(POSITIVES)


def test_recall_is_100_percent_and_no_negative_is_damaged(redactor: Redactor) -> None:
    result = score(redactor.text, redactor.json_text)
    leaks = [f"{p.kind}: {p.text!r} -> {out!r}" for p, out in result.leaked]
    damaged = [f"{text!r} -> {out!r}" for text, out in result.damaged]
    assert leaks == []
    assert damaged == []
    assert result.recall == 1.0
    assert result.precision == 1.0


@pytest.mark.parametrize("positive", POSITIVES, ids=lambda p: f"{p.kind}:{p.text[:40]}")
def test_each_positive_is_replaced_by_its_kind(redactor: Redactor, positive: object) -> None:
    from tests.support.redaction_corpus import Positive

    assert isinstance(positive, Positive)
    counts: dict[str, int] = {}
    redact = redactor.json_text if positive.json else redactor.text
    out = redact(positive.text, counts)
    assert f"[REDACTED:{positive.kind}]" in out
    assert counts.get(positive.kind, 0) >= 1
    assert sum(counts.values()) == out.count("[REDACTED:")
    if positive.json:
        json.loads(out)  # JSON text stays JSON


def test_redaction_is_idempotent_over_the_corpus(redactor: Redactor) -> None:
    for positive in POSITIVES:
        redact = redactor.json_text if positive.json else redactor.text
        once = redact(positive.text)
        counts: dict[str, int] = {}
        assert redact(once, counts) == once, positive.text
        assert counts == {}, positive.text  # the second pass finds nothing new
    for text in NEGATIVES:
        assert redactor.text(redactor.text(text)) == text


def test_phonenumbers_is_imported_only_for_a_phone_candidate() -> None:
    fresh = Redactor()
    before = "phonenumbers" in sys.modules
    fresh.text("see run 12345678-9012-ac51-2470-90f28a8e62b5, price $12.50")
    if not before:
        assert "phonenumbers" not in sys.modules
    assert fresh.text("call +44 20 7946 0958") == "call [REDACTED:phone]"
    assert "phonenumbers" in sys.modules


def test_phone_region_decides_numbers_without_a_country_code() -> None:
    text = "ring 020 7946 0958 today"
    assert Redactor(phone_region="US").text(text) == text
    assert Redactor(phone_region="GB").text(text) == "ring [REDACTED:phone] today"
    with pytest.raises(ValueError, match="leniency"):
        Redactor(phone_leniency="LOOSE")  # type: ignore[arg-type]


def test_the_emitter_redacts_every_free_text_field_and_records_the_counts() -> None:
    emitter = InMemoryEmitter(redactor=True)
    ids = {
        "tenant_id": "acme",
        "user_id": "u-17",
        "agent_id": "planner",
        "agent_version": "1.0",
        "run_id": "12345678-9012-ac51-2470-90f28a8e62b5",
    }
    emitter.emit(
        ModelCall,
        **ids,
        model="m",
        provider="p",
        latency_ms=1.0,
        status="ERROR",
        error_class="NON_RETRYABLE",
        error_code="bad key sk-ant-api03-AbCdEf0123456789AbCdEf0123456789",
    )
    emitter.emit(
        ToolCall,
        **ids,
        tool="pay",
        status="SUCCESS",
        latency_ms=2.0,
        params={"card": 4111111111111111, "note": "order 20261130-0042"},
        result_summary="mailed bob@example.com",
    )
    emitter.emit(ReviewDecision, **ids, reviewer="r-1", decision="APPROVED", comment="ok")
    model_call, tool_call, review = emitter.decoded()
    assert isinstance(model_call, ModelCall)
    assert model_call.error_code == "bad key [REDACTED:api_key]"
    assert model_call.redactions == {"api_key": 1}
    assert isinstance(tool_call, ToolCall)
    assert json.loads(tool_call.params) == {
        "card": "[REDACTED:card]",
        "note": "order 20261130-0042",
    }
    assert tool_call.result_summary == "mailed [REDACTED:email]"
    assert tool_call.redactions == {"card": 1, "email": 1}
    assert isinstance(review, ReviewDecision)
    assert review.redactions == {}
    assert review.run_id == ids["run_id"]


def test_the_cheap_scan_never_skips_a_secret_named_key() -> None:
    """Every word that makes a key secret is seen by the scan that lets clean text through."""
    from agentstream.core.redact import _keys

    words = _keys._SECRET_WORDS | _keys._PASSWORD_WORDS
    keys = [*words, *(f"{prefix}_key" for prefix in _keys._KEY_PREFIXES), "session_id", "key"]
    redactor = Redactor()
    for key in keys:
        assert _keys.secret_key(key) is not None, key
        text = json.dumps({key: 5})
        assert redactor.may_match(text), key
        assert redactor.json_text(text) != text, key
        assert redactor.text(f"{key}=x1") != f"{key}=x1", key
