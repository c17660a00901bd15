"""`agentstream rollout`: gradual rollouts with verdicts (the processors' rollouts stage).

* ``rollout start --agent A --baseline V1 --candidate V2 --stages 5,10,25,50,100
  --min-stage 24h --guard "error_rate <= +1pp" --guard "p95_latency <= +10%"`` (or
  ``--file rollout.yaml`` with the same keys) writes the rollout on the compacted rollouts
  topic; blue-green is ``--stages 0,100``;
* ``rollout status [--agent A] [--json]`` — where each rollout stands (from the topic), the
  candidate's traffic percent for the user's router;
* ``rollout history [--agent A]`` — every verdict with its stage's figures (ClickHouse
  ``rollouts`` table);
* ``rollout rollback --agent A --reason TEXT`` — a recorded, timed rollback by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentstream.core.errors import ConfigError

if TYPE_CHECKING:
    from agentstream.core.config import Settings
    from agentstream.schemas import Rollout

__all__ = ["register"]


def _stages(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--stages: comma-separated percents, not {text!r}"
        ) from exc


def _duration(text: str) -> float:
    from agentstream.core.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--min-stage: {exc}") from exc


def _current(settings: Settings) -> dict[str, Rollout]:
    from agentstream.cli._topic_read import read_topic
    from agentstream.processors.rollouts import latest
    from agentstream.schemas import Rollout

    return latest(read_topic(settings, "rollouts", Rollout))


def _produce(settings: Settings, records: list[tuple[str, bytes, Any]]) -> None:
    """``(stream, key, record)`` through one producer and one flush that checks delivery."""
    from agentstream.core import kafka

    _send(kafka.producer(settings, "tools"), settings, records)


def _send(producer: Any, settings: Settings, records: list[tuple[str, bytes, Any]]) -> None:
    """Produce every record, flush once; DeliveryError when one is refused or still queued."""
    from agentstream.core.errors import DeliveryError
    from agentstream.schemas import encode_model

    failed: list[str] = []

    def delivered(err: Any, message: Any) -> None:
        if err is not None:
            failed.append(f"{message.topic()}: {err}")

    for stream, key, record in records:
        producer.produce(
            settings.topics.name(stream), encode_model(record), key, on_delivery=delivered
        )
    left = producer.flush(30)
    if left:
        raise DeliveryError(f"rollout: Kafka did not acknowledge {left} record(s) within 30 s")
    if failed:
        raise DeliveryError(f"rollout: Kafka refused {len(failed)} record(s): {failed[0]}")


def _definition(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The rollout's fields from the flags or the YAML file; errors name the field."""
    from agentstream.core.durations import parse_duration

    if args.file is not None:
        import yaml

        try:
            data = yaml.safe_load(Path(args.file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{args.file}: cannot read: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{args.file}: expected a mapping of rollout fields")
        where = f"{args.file}: "
        unknown = set(data) - {
            "agent",
            "baseline",
            "candidate",
            "stages",
            "min_stage",
            "guards",
            "min_runs",
        }
        if unknown:
            raise ConfigError(f"{where}unknown field(s): {', '.join(sorted(unknown))}")
        stages = data.get("stages")
        if isinstance(stages, str):
            stages = [s.strip() for s in stages.split(",")]
        try:
            min_stage = parse_duration(str(data.get("min_stage", settings.rollouts.min_stage_s)))
        except ValueError as exc:
            raise ConfigError(f"{where}min_stage: {exc}") from exc
        fields = {
            "agent_id": data.get("agent"),
            "baseline": str(data.get("baseline", "")),
            "candidate": str(data.get("candidate", "")),
            "stages": stages,
            "min_stage_s": min_stage,
            "guards": tuple(data.get("guards") or ()),
            "min_runs": data.get("min_runs", settings.rollouts.min_runs),
        }
        return {"where": where, "guard_field": f"{where}guards", **fields}
    missing = [
        f"--{n}" for n in ("agent", "baseline", "candidate", "stages") if getattr(args, n) is None
    ]
    if missing:
        raise ConfigError(f"rollout start: missing {', '.join(missing)} (or --file)")
    return {
        "where": "",
        "guard_field": "--guard",
        "agent_id": args.agent,
        "baseline": args.baseline,
        "candidate": args.candidate,
        "stages": args.stages,
        "min_stage_s": args.min_stage
        if args.min_stage is not None
        else settings.rollouts.min_stage_s,
        "guards": tuple(args.guard or ()),
        "min_runs": args.min_runs if args.min_runs is not None else settings.rollouts.min_runs,
    }


def _start(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agentstream.core.config import get_settings
    from agentstream.processors.rollouts import parse_guards
    from agentstream.schemas import EventValidationError, Rollout

    settings = get_settings()
    fields = _definition(args, settings)
    where, guard_field = fields.pop("where"), fields.pop("guard_field")
    guards = parse_guards(fields["guards"], guard_field)
    fields["guards"] = tuple(str(g) for g in guards)
    try:
        rollout = Rollout(**fields, created_by=args.by)
    except (ValidationError, EventValidationError) as exc:
        errors = exc.errors() if isinstance(exc, ValidationError) else None
        detail = (
            "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rollout'}: {e['msg']}" for e in errors)
            if errors
            else str(exc)
        )
        raise ConfigError(f"{where}{detail}") from exc
    active = _current(settings).get(rollout.agent_id)
    if active is not None and active.status == "ACTIVE" and not args.force:
        raise ConfigError(
            f"agent {rollout.agent_id}: rollout {active.baseline} -> {active.candidate} is still "
            "ACTIVE (rollout rollback it first, or --force to replace it)"
        )
    _produce(settings, [("rollouts", rollout.agent_id.encode(), rollout)])
    print(
        f"rollout {rollout.rollout_id}: {rollout.agent_id} {rollout.baseline} -> "
        f"{rollout.candidate}, stages {','.join(map(str, rollout.stages))}%, at least "
        f"{rollout.min_stage_s:g} s per stage; guards: {'; '.join(rollout.guards)}"
    )
    return 0


def _percent(r: Rollout) -> int:
    return 0 if r.status in ("ROLLED_BACK", "ABORTED") else r.percent


def _status_doc(r: Rollout) -> dict[str, Any]:
    return {
        "agent_id": r.agent_id,
        "rollout_id": r.rollout_id,
        "baseline": r.baseline,
        "candidate": r.candidate,
        "status": r.status,
        "stage_index": r.stage_index,
        "stages": list(r.stages),
        "candidate_percent": _percent(r),
        "stage_started_at": r.stage_started_at.isoformat(),
        "updated_at": r.updated_at.isoformat(),
        "guards": list(r.guards),
        "reason": r.reason,
    }


def _status(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings

    rollouts = [r for a, r in sorted(_current(get_settings()).items()) if args.agent in (None, a)]
    if args.json:
        sys.stdout.write(json.dumps([_status_doc(r) for r in rollouts], indent=2) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Rollouts ({len(rollouts)})", title_justify="left")
    for column in (
        "agent",
        "baseline",
        "candidate",
        "status",
        "stage",
        "candidate %",
        "since",
        "why",
    ):
        table.add_column(column, overflow="fold")
    for r in rollouts:
        table.add_row(
            r.agent_id, r.baseline, r.candidate, r.status,
            f"{r.stage_index + 1}/{len(r.stages)}", str(_percent(r)),
            r.stage_started_at.strftime("%Y-%m-%d %H:%M:%S"), (r.reason or "")[:120],
        )  # fmt: skip
    Console(soft_wrap=True, highlight=False).print(table)
    return 0


def _history(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import connect, format_result

    sql, params = _history_query(args.agent, args.limit)
    analyst = connect(get_settings(), args.key)
    try:
        result = analyst.query(sql, params)
    finally:
        analyst.close()
    sys.stdout.write(
        format_result(result, "json" if args.json else "table", title="Rollout verdicts")
    )
    return 0


def _history_query(agent: str | None, limit: int) -> tuple[str, dict[str, Any]]:
    """The verdicts query; the user's values go as server-side parameters."""
    params: dict[str, Any] = {"limit": int(limit)}
    where = ""
    if agent is not None:
        where = "WHERE agent_id = {agent:String} "
        params["agent"] = agent
    sql = (
        "SELECT decided_at, agent_id, baseline, candidate, verdict, stage_percent, next_percent, "
        "manual, metrics['runs.candidate'] AS runs_candidate, metrics['runs.baseline'] AS "
        f"runs_baseline, reason FROM rollouts_dedup {where}ORDER BY decided_at, stage_index "
        "LIMIT {limit:UInt64}"
    )
    return sql, params


def _rollback(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.processors.rollouts import verdict_alert
    from agentstream.schemas import RolloutVerdict

    settings = get_settings()
    current = _current(settings).get(args.agent)
    if current is None or current.status not in ("ACTIVE", "COMPLETED"):
        state = "no rollout" if current is None else f"rollout is {current.status}"
        raise ConfigError(f"agent {args.agent}: {state}; nothing to roll back")
    now = datetime.now(UTC)
    verdict = RolloutVerdict(
        rollout_id=current.rollout_id,
        agent_id=current.agent_id,
        baseline=current.baseline,
        candidate=current.candidate,
        verdict="ROLLBACK",
        stage_index=current.stage_index,
        stage_percent=current.percent,
        next_percent=0,
        reason=args.reason,
        decided_at=now,
        stage_started_at=min(current.stage_started_at, now),
        manual=True,
    )
    aborted = current.model_copy(
        update={"status": "ABORTED", "updated_at": now, "reason": args.reason}
    )
    alert = verdict_alert(verdict, settings.rollouts.channels)
    key = current.agent_id.encode()
    _produce(
        settings,
        [
            ("rollout_verdicts", key, verdict),
            ("rollouts", key, aborted),
            ("alerts", f"{alert.rule_id}|{alert.scope_key}".encode(), alert),
        ],
    )
    print(
        f"rolled back {current.agent_id} {current.candidate} -> {current.baseline} at "
        f"{now.isoformat()} (was at {current.percent}%): {args.reason}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rollout",
        help="gradual rollouts with PROMOTE / HOLD / ROLLBACK verdicts",
        description="Canary, gradual and blue-green rollouts judged by the processors on the "
        "rollups; the traffic split stays in your router (rollout status --json).",
    )
    sub = parser.add_subparsers(dest="rollout_command", metavar="SUBCOMMAND", required=True)
    s = sub.add_parser(
        "start",
        help="start a rollout (flags or --file rollout.yaml)",
        description="Start a rollout: the candidate's traffic percent per stage, how long a "
        "stage lasts at least (event time), and the guards judged at the 95 %% bound "
        "shared among them.",
    )
    s.add_argument(
        "--file",
        type=Path,
        help="a YAML file: agent, baseline, candidate, stages, min_stage, guards, min_runs",
    )
    s.add_argument("--agent", help="the agent id")
    s.add_argument("--baseline", help="the version serving now")
    s.add_argument("--candidate", help="the version to roll out")
    s.add_argument(
        "--stages", type=_stages, help="candidate percents, e.g. 5,10,25,50,100 (blue-green: 0,100)"
    )
    s.add_argument(
        "--min-stage",
        type=_duration,
        default=None,
        help="least event time per stage (default rollouts.min_stage_s, 24h)",
    )
    s.add_argument(
        "--guard",
        action="append",
        help="e.g. 'error_rate <= +1pp', 'p95_latency <= +10%%' (repeatable)",
    )
    s.add_argument(
        "--min-runs",
        type=int,
        default=None,
        help="ended runs each side needs per stage (default rollouts.min_runs)",
    )
    s.add_argument("--by", default="cli", help="who starts it")
    s.add_argument("--force", action="store_true", help="replace an ACTIVE rollout of the agent")
    s.set_defaults(handler=_start)
    st = sub.add_parser(
        "status",
        help="where each rollout stands",
        description="Each agent's latest rollout state, from the rollouts topic.",
    )
    st.add_argument("--agent", help="only this agent")
    st.add_argument("--json", action="store_true", help="JSON, for routers that poll")
    st.set_defaults(handler=_status)
    h = sub.add_parser(
        "history",
        help="every verdict with its stage's figures",
        description="Rollout verdicts from ClickHouse (rollouts table).",
    )
    h.add_argument("--agent", help="only this agent")
    h.add_argument("--limit", type=int, default=200, help="rows (default 200)")
    h.add_argument("--json", action="store_true", help="JSON instead of a table")
    h.add_argument("--key", help="analyst API key name (default: the operator's local access)")
    h.set_defaults(handler=_history)
    rb = sub.add_parser(
        "rollback",
        help="roll back by hand (recorded, timed)",
        description="Record a manual ROLLBACK verdict and abort the agent's rollout.",
    )
    rb.add_argument("--agent", required=True, help="the agent id")
    rb.add_argument("--reason", required=True, help="why (recorded with the time)")
    rb.set_defaults(handler=_rollback)
