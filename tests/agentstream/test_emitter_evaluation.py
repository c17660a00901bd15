"""The Emitter's helpers for issue #16: hand-off and value fields on transitions, benchmark
results and end-user feedback (through the InMemoryEmitter: same validation and encoding)."""

from __future__ import annotations

import pytest

from agentstream import EvalResult, EventValidationError, Feedback, StateTransition, run_context
from agentstream.core.config import load_settings
from agentstream.testing import InMemoryEmitter


@pytest.fixture
def emitter() -> InMemoryEmitter:
    return InMemoryEmitter(load_settings(topics={"prefix": "t."}))


def test_a_handoff_and_a_valued_completion(emitter: InMemoryEmitter) -> None:
    with run_context(tenant_id="acme", agent_id="booker", agent_version="2.0", run_id="child"):
        start = emitter.transition("INIT", parent_run_id="parent", handoff_from_agent="triage")
        emitter.transition("PREPARING")
        emitter.transition("EXECUTING")
        emitter.transition("REVIEWING")
        done = emitter.transition("COMPLETED", value_usd=120.0)
    assert (start.parent_run_id, start.handoff_from_agent, start.value_usd) == (
        "parent",
        "triage",
        None,
    )
    assert done.value_usd == 120.0
    assert done.parent_run_id is None
    decoded = emitter.decoded()
    assert decoded[0] == start
    assert decoded[-1] == done
    assert all(isinstance(e, StateTransition) for e in decoded)
    assert {m.topic for m in emitter.messages} == {"t.transitions"}


def test_eval_results_and_feedback_are_redacted_and_go_to_their_topics(
    emitter: InMemoryEmitter,
) -> None:
    with run_context(tenant_id="acme", agent_id="booker", agent_version="2.0", run_id="r-9"):
        result = emitter.eval_result(
            "smoke",
            "t-3",
            correct=False,
            latency_ms=640.0,
            cost_usd=0.002,
            expected="mail bob@example.com",
            got="no idea",
        )
        rating = emitter.feedback(2, "call me at alice@example.com")
    assert isinstance(result, EvalResult)
    assert isinstance(rating, Feedback)
    assert result.expected == "mail [REDACTED:email]"
    assert result.redactions == {"email": 1}
    assert rating.comment == "call me at [REDACTED:email]"
    assert (rating.satisfaction, rating.run_id, result.agent_version) == (2, "r-9", "2.0")
    assert [m.topic for m in emitter.messages] == ["t.eval_results", "t.feedback"]
    assert emitter.decoded() == [result, rating]


def test_bad_values_are_refused_at_the_call_naming_the_field(emitter: InMemoryEmitter) -> None:
    with run_context(tenant_id="acme", agent_id="booker", agent_version="2.0", run_id="r-9"):
        with pytest.raises(EventValidationError, match=r"Feedback\.satisfaction"):
            emitter.feedback(6)
        with pytest.raises(EventValidationError, match=r"EvalResult\.latency_ms"):
            emitter.eval_result("smoke", "t-1", correct=True, latency_ms=-5.0)
        with pytest.raises(EventValidationError, match=r"StateTransition\.value_usd"):
            emitter.transition("INIT", value_usd=-1.0)
    assert emitter.messages == []
