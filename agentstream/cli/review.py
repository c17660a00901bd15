"""`agentstream review`: the human-review queue and decisions.

* ``agentstream review queue [--since 7d] [--limit 50] [--all] [--json]`` — runs the
  processors picked for review (``review_queue``) that have no decision yet, and the
  coverage (requested runs reviewed) over the period, from ClickHouse through the analyst
  client;
* ``agentstream review decide RUN --approve|--reject|--override [--score 1-5] [--note TEXT]``
  — writes a ``ReviewDecision`` through the Emitter (the run's tenant, agent and version are
  looked up in the queue, or given with ``--tenant/--agent/--version``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agentstream.core.errors import AgentstreamError, ConfigError

__all__ = ["register"]


def _seconds(text: str) -> float:
    from agentstream.core.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--since: {exc}") from exc


def _score(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 5:
        raise argparse.ArgumentTypeError(f"--score: a whole number from 1 to 5, not {text!r}")
    return value


def _queue(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import connect

    since = int(args.since)
    pending = "" if args.all else "AND q.run_id NOT IN (SELECT run_id FROM review_decisions_dedup)"
    rows_sql = (
        "SELECT q.requested_at, q.tenant_id, q.agent_id, q.agent_version, q.run_id, q.outcome, "
        "q.reason FROM review_queue_dedup AS q "
        f"WHERE q.requested_at >= now64() - INTERVAL {since} SECOND {pending} "
        f"ORDER BY q.requested_at LIMIT {int(args.limit)}"
    )
    coverage_sql = (
        "SELECT count() AS requested, "
        "countIf(run_id IN (SELECT run_id FROM review_decisions_dedup)) AS reviewed "
        f"FROM review_queue_dedup WHERE requested_at >= now64() - INTERVAL {since} SECOND"
    )
    analyst = connect(get_settings(), args.key)
    try:
        rows = analyst.query(rows_sql).dicts()
        cover = analyst.query(coverage_sql).dicts()[0]
    finally:
        analyst.close()
    requested, reviewed = int(cover["requested"]), int(cover["reviewed"])
    coverage = reviewed / requested if requested else None
    if args.json:
        doc: dict[str, Any] = {
            "requested": requested,
            "reviewed": reviewed,
            "coverage": coverage,
            "runs": [{k: str(v) for k, v in r.items()} for r in rows],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    title = "Requested runs" if args.all else "Awaiting review"
    table = Table(title=f"{title} ({len(rows)} shown)", title_justify="left")
    for column in ("requested at (UTC)", "tenant", "agent", "version", "run", "outcome", "why"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["requested_at"].strftime("%Y-%m-%d %H:%M:%S"),
            *(str(r[c]) for c in ("tenant_id", "agent_id", "agent_version", "run_id")),
            str(r["outcome"]),
            str(r["reason"]),
        )
    out = Console(soft_wrap=True, highlight=False)
    out.print(table)
    share = "n/a" if coverage is None else f"{coverage:.1%}"
    out.print(f"coverage: {reviewed} of {requested} requested runs reviewed ({share})")
    return 0


#: the run's tenant, agent and version; ``run`` is a server-side parameter
RUN_SQL = (
    "SELECT tenant_id, agent_id, agent_version FROM review_queue_dedup "
    "WHERE run_id = {run:String} LIMIT 1"
)


def _lookup(args: argparse.Namespace) -> tuple[str, str, str]:
    """(tenant, agent, version) of the run: the flags, else the review queue."""
    given = (args.tenant, args.agent, args.version)
    if all(given):
        return given
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import connect

    analyst = connect(get_settings(), args.key)
    try:
        rows = analyst.query(RUN_SQL, {"run": args.run}).rows
    finally:
        analyst.close()
    if not rows:
        raise ConfigError(
            f"run {args.run!r} is not in the review queue: give --tenant, --agent and --version"
        )
    found = tuple(str(v) for v in rows[0])
    return (args.tenant or found[0], args.agent or found[1], args.version or found[2])


def _decide(args: argparse.Namespace) -> int:
    from agentstream import Emitter, run_context
    from agentstream.schemas import Decision

    decision = (
        Decision.APPROVED
        if args.approve
        else Decision.REJECTED
        if args.reject
        else Decision.OVERRIDDEN
    )
    tenant, agent, version = _lookup(args)
    emitter = Emitter()
    try:
        with run_context(
            tenant_id=tenant,
            agent_id=agent,
            agent_version=version,
            run_id=args.run,
            user_id=args.reviewer,
        ):
            event = emitter.review(args.reviewer, decision, args.note, score=args.score)
        emitter.flush(10)
        stats = emitter.stats()
    finally:
        emitter.close()
    if stats.lost:
        raise AgentstreamError(f"review of {args.run}: the decision was lost ({stats})")
    print(f"{decision.value} {args.run} (score {args.score or '-'}; event {event.event_id})")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "review",
        help="the human-review queue (1 %% of runs, plus rules) and review decisions",
        description="Runs picked for human review by the processors, and decisions on them.",
    )
    sub = parser.add_subparsers(dest="review_command", metavar="SUBCOMMAND", required=True)
    q = sub.add_parser(
        "queue",
        help="runs awaiting review, and the review coverage",
        description="Runs the processors picked for review (review_queue) with no decision yet, "
        "and the share of requested runs reviewed, from ClickHouse.",
    )
    q.add_argument("--since", type=_seconds, default=7 * 86_400.0, help="period (default 7d)")
    q.add_argument("--limit", type=int, default=50, help="rows shown (default 50)")
    q.add_argument("--all", action="store_true", help="every requested run, reviewed or not")
    q.add_argument("--json", action="store_true", help="JSON instead of a table")
    q.add_argument("--key", help="analyst API key name (default: the operator's local access)")
    q.set_defaults(handler=_queue)
    d = sub.add_parser(
        "decide",
        help="record a review decision on a run (a ReviewDecision through the Emitter)",
        description="Write a ReviewDecision for RUN through the Emitter.",
    )
    d.add_argument("run", metavar="RUN", help="the run id")
    how = d.add_mutually_exclusive_group(required=True)
    how.add_argument("--approve", action="store_true", help="the run's outcome is right")
    how.add_argument("--reject", action="store_true", help="the run's outcome is wrong")
    how.add_argument("--override", action="store_true", help="the reviewer replaced the outcome")
    d.add_argument("--score", type=_score, default=None, help="quality score, 1 (poor) to 5")
    d.add_argument("--note", default=None, help="the reviewer's comment (redacted)")
    d.add_argument("--reviewer", default="cli", help="who reviews (default: cli)")
    d.add_argument("--tenant", help="the run's tenant (default: from the review queue)")
    d.add_argument("--agent", help="the run's agent (default: from the review queue)")
    d.add_argument("--version", help="the run's agent version (default: from the review queue)")
    d.add_argument("--key", help="analyst API key name for the queue look-up")
    d.set_defaults(handler=_decide)
