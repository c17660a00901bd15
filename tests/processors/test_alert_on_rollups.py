"""The default rules on rollups computed by the real aggregator from tool-call events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentstream.core.config import RollupSettings
from agentstream.processors import RollupAggregator, to_us
from agentstream.processors.alerts import AlertEvaluator, load_rules
from agentstream.schemas import Alert, CallStatus, ErrorClass, ToolCall

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
MINUTES = 12
CALLS_PER_MINUTE = 200
PLANNER_KEY = "tenant=acme/agent=planner@1.0"
SEARCH_KEY = "tenant=acme/tool=search"
CODER_KEY = "tenant=acme/agent=coder@2.1"


def calls(
    agent: str, version: str, tool: str, minute: int, errors: int, slow: int
) -> list[ToolCall]:
    """200 calls spread over one minute: the first ``errors`` fail, the last ``slow`` take 20 s."""
    out = []
    for i in range(CALLS_PER_MINUTE):
        failed = i < errors
        out.append(
            ToolCall(
                tenant_id="acme",
                user_id="u1",
                agent_id=agent,
                agent_version=version,
                run_id=f"{agent}-{minute}-{i}",
                tool=tool,
                status=CallStatus.ERROR if failed else CallStatus.SUCCESS,
                error_class=ErrorClass.RETRYABLE if failed else ErrorClass.NONE,
                latency_ms=20_000.0 if i >= CALLS_PER_MINUTE - slow else 400.0 + i,
                event_time=T0 + timedelta(minutes=minute, seconds=i * 0.3),
            )
        )
    return out


def test_default_rules_on_aggregated_rollups() -> None:
    aggregator = RollupAggregator(RollupSettings(resolutions=("1m",), allowed_lateness_s=0))
    evaluator = AlertEvaluator(load_rules())
    alerts: list[Alert] = []
    for minute in range(MINUTES):
        burst = minute in (3, 4)  # planner's search calls fail 10 % for two minutes
        slow = 40 if minute in (6, 7) else 0  # a fifth of coder's calls take 20 s
        events = calls("planner", "1.0", "search", minute, 20 if burst else 2, 0)
        events += calls("coder", "2.1", "lookup", minute, 2, slow)
        for event in sorted(events, key=lambda e: e.event_time):
            aggregator.add(event)
        for rollup in aggregator.advance():
            alerts += evaluator.process(rollup)
    for rollup in aggregator.advance(watermark=to_us(T0 + timedelta(minutes=MINUTES + 1))):
        alerts += evaluator.process(rollup)

    got = [
        (a.rule_id, a.scope_key, a.state.value, int((a.window_start - T0).total_seconds() // 60))
        for a in alerts
    ]
    assert sorted(got) == sorted(
        [
            ("agent-error-rate", PLANNER_KEY, "FIRING", 3),
            ("agent-error-rate", PLANNER_KEY, "RESOLVED", 5),
            ("tool-error-rate", SEARCH_KEY, "FIRING", 3),
            ("tool-error-rate", SEARCH_KEY, "RESOLVED", 5),
            ("agent-p95-latency", CODER_KEY, "FIRING", 6),
            ("agent-p95-latency", CODER_KEY, "RESOLVED", 8),
        ]
    )
    p95 = next(a for a in alerts if a.rule_id == "agent-p95-latency" and a.state == "FIRING")
    assert abs(p95.value - 20_000.0) <= 20_000.0 * 0.02  # within the sketch's accuracy
