"""Canned reports: the seed's questions as parameterised SQL over the deduplicated views.

Every report reads the ``*_dedup`` views (so a replayed batch never counts
twice), filters on the event's own time (``--since`` / ``--until``) and, when a
tenant is given, on ``tenant_id``. Definitions:

* an *error* is a tool call with status ERROR; the error classes are counted
  over calls whose ``error_class`` is not NONE (PARTIAL results included);
* latency percentiles are exact and inclusive (``quantileExactInclusive``:
  linear interpolation between closest ranks, like NumPy's default);
* completion rate = runs that reached COMPLETED / runs that reached COMPLETED
  or FAILED in the window; override rate = OVERRIDDEN decisions / reviews;
* dwell time is the time a run spent in ``from_state`` before the transition;
* redactions: per tenant, stream and kind, what the Emitter's redaction replaced
  (the events' ``redactions``) and what the sink's second pass replaced on top
  (``sink_redactions``: what an Emitter missed, or an Emitter with redaction off).
  Counts only: the values are never stored.
* business (the daily tier): per UTC day and agent, from the streamed 1 d rollups of the
  agent scopes (``rollups_1d``: tasks = runs started, completed, failed, hand-offs, model
  cost, value of completed runs, ROI = value / cost), the end users' ``Feedback`` (how
  many, mean satisfaction 1-5) and the reviewers' scores (how many, mean 1-5); it reaches
  as far back as the 1 d rollups (``retention.rollups_1d_days``) and, for satisfaction
  and scores, the raw events (``retention.business_days``/``legal_days``); a day shows
  once its 1 d window has closed (day end + ``rollups.allowed_lateness_s``);
* handoffs: per hour and agent, runs started as a hand-off from another run
  (``parent_run_id`` set) and their share of the runs started.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentstream.core.durations import parse_duration
from agentstream.core.errors import QueryRefused

__all__ = ["REPORTS", "Report", "duration_option", "parse_time", "render_report"]

_TIME = "event_time >= {since:DateTime64(6, 'UTC')}"
_UNTIL = " AND event_time < {until:DateTime64(6, 'UTC')}"
_TENANT = " AND tenant_id = {tenant:String}"


def _percentiles(column: str) -> str:
    return ", ".join(
        f"quantileExactInclusive({level})({column}) AS p{name}_ms"
        for level, name in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))
    )


@dataclass(frozen=True)
class Report:
    """A canned report: its name, what it answers and its SQL template."""

    name: str
    title: str
    sql: str

    def render(self, *, tenant: bool, until: bool) -> str:
        where = _TIME + (_UNTIL if until else "") + (_TENANT if tenant else "")
        return self.sql.replace("{where}", where)


_REPORTS = (
    Report(
        "qps",
        "Tool calls per second and success rate over time",
        "SELECT toStartOfInterval(event_time, toIntervalSecond({bucket_s:UInt32})) AS bucket, "
        "count() AS calls, calls / {bucket_s:UInt32} AS qps, "
        "countIf(status = 'SUCCESS') AS successes, successes / calls AS success_rate "
        "FROM tool_calls_dedup WHERE {where} GROUP BY bucket ORDER BY bucket",
    ),
    Report(
        "latency-tool",
        "Latency p50 / p95 / p99 (ms) by tool",
        f"SELECT tool, count() AS calls, {_percentiles('latency_ms')} "
        "FROM tool_calls_dedup WHERE {where} GROUP BY tool ORDER BY tool",
    ),
    Report(
        "latency-version",
        "Latency p50 / p95 / p99 (ms) by agent version",
        f"SELECT agent_id, agent_version, count() AS calls, {_percentiles('latency_ms')} "
        "FROM tool_calls_dedup WHERE {where} "
        "GROUP BY agent_id, agent_version ORDER BY agent_id, agent_version",
    ),
    Report(
        "top-tools",
        "Top 10 tools by calls",
        "SELECT tool, count() AS calls, countIf(status = 'ERROR') AS errors, "
        "errors / calls AS error_rate "
        "FROM tool_calls_dedup WHERE {where} GROUP BY tool ORDER BY calls DESC, tool LIMIT 10",
    ),
    Report(
        "top-errors",
        "Top 10 tools by errors",
        "SELECT tool, countIf(status = 'ERROR') AS errors, count() AS calls, "
        "errors / calls AS error_rate "
        "FROM tool_calls_dedup WHERE {where} GROUP BY tool HAVING errors > 0 "
        "ORDER BY errors DESC, tool LIMIT 10",
    ),
    Report(
        "error-classes",
        "Retryable vs non-retryable vs timeout errors",
        "SELECT error_class, count() AS calls, calls / sum(calls) OVER () AS share "
        "FROM tool_calls_dedup WHERE {where} AND error_class != 'NONE' "
        "GROUP BY error_class ORDER BY calls DESC, error_class",
    ),
    Report(
        "completion",
        "Run completion and human override rates by agent version",
        "SELECT agent_id, agent_version, r.completed AS completed, r.failed AS failed, "
        "if(completed + failed = 0, NULL, completed / (completed + failed)) AS completion_rate, "
        "v.reviews AS reviews, v.overrides AS overrides, "
        "if(reviews = 0, NULL, overrides / reviews) AS override_rate "
        "FROM (SELECT agent_id, agent_version, "
        "uniqExactIf(run_id, to_state = 'COMPLETED') AS completed, "
        "uniqExactIf(run_id, to_state = 'FAILED') AS failed "
        "FROM state_transitions_dedup WHERE {where} GROUP BY agent_id, agent_version) AS r "
        "FULL OUTER JOIN (SELECT agent_id, agent_version, count() AS reviews, "
        "countIf(decision = 'OVERRIDDEN') AS overrides "
        "FROM review_decisions_dedup WHERE {where} GROUP BY agent_id, agent_version) AS v "
        "USING (agent_id, agent_version) ORDER BY agent_id, agent_version",
    ),
    Report(
        "dwell",
        "Time spent in each state (ms): count, p50 / p95 / p99, mean, max",
        f"SELECT from_state AS state, count() AS transitions, {_percentiles('dwell_ms')}, "
        "avg(dwell_ms) AS mean_ms, max(dwell_ms) AS max_ms "
        "FROM state_transitions_dedup WHERE {where} "
        "AND from_state IS NOT NULL AND dwell_ms IS NOT NULL GROUP BY state ORDER BY state",
    ),
    Report(
        "cost-agent",
        "Model cost and tokens per agent",
        "SELECT agent_id, count() AS model_calls, sum(input_tokens) AS tokens_in, "
        "sum(output_tokens) AS tokens_out, sum(cost_usd) AS cost_usd "
        "FROM model_calls_dedup WHERE {where} GROUP BY agent_id ORDER BY cost_usd DESC, agent_id",
    ),
    Report(
        "cost-tenant",
        "Model cost and tokens per tenant",
        "SELECT tenant_id, count() AS model_calls, sum(input_tokens) AS tokens_in, "
        "sum(output_tokens) AS tokens_out, sum(cost_usd) AS cost_usd "
        "FROM model_calls_dedup WHERE {where} GROUP BY tenant_id "
        "ORDER BY cost_usd DESC, tenant_id",
    ),
)

_EVENT_TABLES = ("tool_calls", "model_calls", "state_transitions", "review_decisions")


def _redaction_rows(table: str, column: str) -> str:
    """One row per (event, kind) of ``column``: e = the Emitter's count, s = the sink's."""
    counts = "n AS e, 0 AS s" if column == "redactions" else "0 AS e, n AS s"
    return (
        f"SELECT tenant_id, '{table}' AS stream, kind, {counts} "
        f"FROM {table}_dedup ARRAY JOIN mapKeys({column}) AS kind, mapValues({column}) AS n "
        "WHERE {where}"
    )


_REDACTIONS = Report(
    "redactions",
    "What redaction replaced, by tenant, stream and kind: by the Emitter, by the sink's pass",
    "SELECT tenant_id, stream, kind, sum(e) AS by_emitter, sum(s) AS by_sink, "
    "by_emitter + by_sink AS total FROM ("
    + " UNION ALL ".join(
        _redaction_rows(table, column)
        for table in _EVENT_TABLES
        for column in ("redactions", "sink_redactions")
    )
    + ") GROUP BY tenant_id, stream, kind ORDER BY tenant_id, stream, total DESC, kind",
)

#: the agent-scope 1 h rollups, with their window start as the time the filters read
_AGENT_HOURS = (
    "(SELECT *, window_start AS event_time FROM rollups_1h_dedup WHERE scope_kind = 'AGENT')"
)
#: the agent-scope 1 d rollups, with their window start as the time the filters read
_AGENT_DAYS = (
    "(SELECT *, window_start AS event_time FROM rollups_1d_dedup WHERE scope_kind = 'AGENT')"
)

_BUSINESS = Report(
    "business",
    "Daily business tier per agent: tasks, cost, value, ROI, satisfaction, hand-offs",
    "SELECT day, tenant_id, agent_id, r.tasks AS tasks, r.completed AS completed, "
    "r.failed AS failed, r.handoffs AS handoffs, r.cost_usd AS cost_usd, "
    "r.value_usd AS value_usd, if(r.cost_usd > 0, r.value_usd / r.cost_usd, NULL) AS roi, "
    "f.feedback AS feedback, if(f.feedback = 0, NULL, f.satisfaction) AS satisfaction, "
    "v.scored AS scored_reviews, if(v.scored = 0, NULL, v.review_score) AS review_score "
    "FROM (SELECT toDate(event_time) AS day, tenant_id, agent_id, sum(runs_started) AS tasks, "
    "sum(runs_completed) AS completed, sum(runs_failed) AS failed, sum(handoffs) AS handoffs, "
    "sum(cost_usd) AS cost_usd, sum(value_usd) AS value_usd "
    f"FROM {_AGENT_DAYS} WHERE {{where}} GROUP BY day, tenant_id, agent_id) AS r "
    "FULL OUTER JOIN (SELECT toDate(event_time) AS day, tenant_id, agent_id, "
    "count() AS feedback, avg(satisfaction) AS satisfaction "
    "FROM feedback_dedup WHERE {where} GROUP BY day, tenant_id, agent_id) AS f "
    "USING (day, tenant_id, agent_id) "
    "FULL OUTER JOIN (SELECT toDate(event_time) AS day, tenant_id, agent_id, "
    "count(score) AS scored, avg(score) AS review_score "
    "FROM review_decisions_dedup WHERE {where} GROUP BY day, tenant_id, agent_id) AS v "
    "USING (day, tenant_id, agent_id) ORDER BY day, tenant_id, agent_id",
)

_HANDOFFS = Report(
    "handoffs",
    "Hourly hand-offs per agent: runs started as a hand-off, and their share",
    "SELECT event_time AS hour, tenant_id, agent_id, sum(runs_started) AS runs_started, "
    "sum(handoffs) AS handoffs, if(runs_started = 0, NULL, handoffs / runs_started) AS "
    f"handoff_rate FROM {_AGENT_HOURS} WHERE {{where}} "
    "GROUP BY hour, tenant_id, agent_id ORDER BY hour, tenant_id, agent_id",
)

#: every canned report by name
REPORTS: Mapping[str, Report] = {
    report.name: report for report in (*_REPORTS, _REDACTIONS, _BUSINESS, _HANDOFFS)
}


def duration_option(text: str, *, option: str = "--bucket") -> float:
    """Seconds of ``text`` (:func:`~agentstream.core.durations.parse_duration`), or a
    :class:`QueryRefused` naming ``option``."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise QueryRefused(f"{option}: {exc}") from exc


def parse_time(
    text: str, *, now: dt.datetime | None = None, option: str = "--since"
) -> dt.datetime:
    """``"15m"``, ``"24h"``, ``"7d"`` (ago) or an ISO date/time (UTC when naive)."""
    current = now or dt.datetime.now(dt.UTC)
    try:
        return current - dt.timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise QueryRefused(
            f"{option}: {text!r} is neither a duration (15m, 24h, 7d) nor an ISO time"
        ) from exc
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def render_report(
    name: str,
    *,
    since: dt.datetime,
    until: dt.datetime | None = None,
    tenant: str | None = None,
    bucket_s: int = 60,
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of report ``name``."""
    report = REPORTS.get(name)
    if report is None:
        raise QueryRefused(f"unknown report {name!r}; reports: {', '.join(REPORTS)}")
    if bucket_s < 1:
        raise QueryRefused("--bucket must be at least 1 second")
    params: dict[str, Any] = {"since": since}
    if until is not None:
        params["until"] = until
    if tenant is not None:
        params["tenant"] = tenant
    if "{bucket_s:" in report.sql:
        params["bucket_s"] = bucket_s
    return report.render(tenant=tenant is not None, until=until is not None), params
