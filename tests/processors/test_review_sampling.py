"""Review sampling on the real broker and engine: 1 % of finished runs, always the same ones.

The expected set is computed here from the documented hash spec (BLAKE2b, 8-byte digest of
the run id's UTF-8 bytes, big-endian, / 2**64, below the rate), without importing the
sampler; the rate's tolerance is the binomial interval of the generated population.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from scipy.stats import binom

from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.schemas import AgentState, ReviewRequest, StateTransition, encode_model
from tests.support.engine import engine_settings, produce, read_committed, run_engine

pytestmark = pytest.mark.integration

S = AgentState
RATE = 0.01
RUNS = 3_000
CANARY = "2.0.0-rc1"


def sampled(run_id: str, rate: float) -> bool:
    """The documented spec, written out again."""
    digest = hashlib.blake2b(run_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def population() -> tuple[list[tuple[str, str, bytes]], dict[str, tuple[str, str]]]:
    """RUNS finished runs: every 7th fails, every 10th runs the canary version."""
    clock = datetime.now(UTC) - timedelta(minutes=30)
    records: list[tuple[str, str, bytes]] = []
    runs: dict[str, tuple[str, str]] = {}
    for i in range(RUNS):
        run = f"run-{i:05d}"
        version = CANARY if i % 10 == 0 else "1.9.0"
        end = S.FAILED if i % 7 == 0 else S.COMPLETED
        path = [S.INIT, S.PREPARING, S.EXECUTING]
        path += [S.FAILED] if end is S.FAILED else [S.REVIEWING, S.COMPLETED]
        previous: AgentState | None = None
        for state in path:
            clock += timedelta(microseconds=500)
            event = StateTransition(
                tenant_id="acme",
                user_id="u1",
                agent_id="planner",
                agent_version=version,
                run_id=run,
                event_time=clock,
                from_state=previous,
                to_state=state,
            )
            records.append(("transitions", run, encode_model(event)))
            previous = state
        runs[run] = (version, end.value)
    return records, runs


def test_sampler_picks_one_percent_and_always_the_same_runs(kafka_broker: BrokerHandle) -> None:
    records, runs = population()
    rule = {"name": "canary-failures", "outcome": "FAILED", "agent_version": "*-rc*"}
    settings = engine_settings(kafka_broker, review={"sample_rate": RATE, "rules": [rule]})
    produce(settings, records)
    run_engine(settings, lambda e: e.stats.consumed == len(records), timeout_s=180)

    requests = list(read_committed(settings, "review_requests"))
    assert all(isinstance(r, ReviewRequest) for r in requests)
    by_run = {r.run_id: r for r in requests}
    assert len(by_run) == len(requests), "a run was requested twice"

    expected_sampled = {run for run in runs if sampled(run, RATE)}
    expected_rule = {
        run
        for run, (version, end) in runs.items()
        if version == CANARY and end == "FAILED" and run not in expected_sampled
    }
    assert {r for r, q in by_run.items() if q.reason == "sampled"} == expected_sampled
    assert {r for r, q in by_run.items() if q.reason == "rule:canary-failures"} == expected_rule
    assert set(by_run) == expected_sampled | expected_rule

    # the sampled share is 1 % within the binomial interval of this population
    low, high = binom.interval(0.999, RUNS, RATE)
    assert low <= len(expected_sampled) <= high
    for request in by_run.values():
        version, end = runs[request.run_id]
        assert (request.agent_version, request.outcome) == (version, end)
        assert request.sample_rate == RATE
        assert (request.hash_fraction < RATE) == (request.reason == "sampled")

    # the same ids through a second, fresh pipeline: the very same requests
    again = engine_settings(kafka_broker, review={"sample_rate": RATE, "rules": [rule]})
    produce(again, records)
    run_engine(again, lambda e: e.stats.consumed == len(records), timeout_s=180)
    replayed = {r.run_id: r.request_id for r in read_committed(again, "review_requests")}
    assert replayed == {run: q.request_id for run, q in by_run.items()}
