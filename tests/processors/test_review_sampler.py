"""The review sampler's pure logic: the hash spec, rates, rules, the rules file."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentstream.core.config import ReviewRule, ReviewSettings
from agentstream.core.errors import ConfigError
from agentstream.processors.review import ReviewSampler, hash_fraction, load_rules
from agentstream.schemas import AgentState, StateTransition, ToolCall
from tests.support import records


def end(run_id: str, state: AgentState, version: str = "1.0") -> StateTransition:
    return StateTransition(
        tenant_id="acme",
        user_id="u",
        agent_id="planner",
        agent_version=version,
        run_id=run_id,
        event_time=datetime(2026, 1, 1, tzinfo=UTC),
        from_state=AgentState.EXECUTING,
        to_state=state,
        error_category="TIMEOUT" if state is AgentState.FAILED else None,
    )


@pytest.mark.parametrize("run_id", ["run-1", "", "ünïcode-run", "x" * 300])
def test_hash_fraction_follows_the_spec(run_id: str) -> None:
    digest = hashlib.blake2b(run_id.encode("utf-8"), digest_size=8).digest()
    assert hash_fraction(run_id) == int.from_bytes(digest, "big") / 2**64


def test_a_higher_rate_keeps_every_run_a_lower_rate_picked() -> None:
    ids = [f"r{i}" for i in range(2_000)]
    low = ReviewSampler(ReviewSettings(sample_rate=0.01))
    high = ReviewSampler(ReviewSettings(sample_rate=0.05))
    picked_low = {i for i in ids if low.request(end(i, AgentState.COMPLETED))}
    picked_high = {i for i in ids if high.request(end(i, AgentState.COMPLETED))}
    assert picked_low < picked_high


def test_only_terminal_transitions_are_requested() -> None:
    everyone = ReviewSampler(ReviewSettings(sample_rate=1.0))
    assert everyone.request(end("r", AgentState.REVIEWING)) is None
    assert everyone.request(records.tool_call()) is None
    assert isinstance(records.tool_call(), ToolCall)
    request = everyone.request(end("r", AgentState.FAILED))
    assert request is not None
    assert (request.outcome, request.error_category, request.reason) == (
        "FAILED",
        "TIMEOUT",
        "sampled",
    )


def test_rules_request_matching_runs_whatever_the_hash() -> None:
    rule = ReviewRule(name="canary-failures", outcome="FAILED", agent_version="*-rc*")
    sampler = ReviewSampler(ReviewSettings(sample_rate=0.0, rules=(rule,)))
    assert sampler.request(end("a", AgentState.COMPLETED, "2.0-rc1")) is None
    assert sampler.request(end("a", AgentState.FAILED, "2.0")) is None
    request = sampler.request(end("a", AgentState.FAILED, "2.0-rc1"))
    assert request is not None
    assert request.reason == "rule:canary-failures"
    # the request id is the run's: a replay requests the same id
    again = sampler.request(end("a", AgentState.FAILED, "2.0-rc1"))
    assert again is not None
    assert again.request_id == request.request_id


def test_rules_file(tmp_path: Path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text("- name: all-failures\n  outcome: FAILED\n", encoding="utf-8")
    assert load_rules(good) == (ReviewRule(name="all-failures", outcome="FAILED"),)
    sampler = ReviewSampler(ReviewSettings(sample_rate=0.0, rules_path=good))
    assert sampler.request(end("z", AgentState.FAILED)) is not None
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n  outcome: MAYBE\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[0\.outcome\]"):
        load_rules(bad)
