"""Settings sections of the evaluation loop and of analyst access.

Part of :mod:`agentstream.core.config`, which re-exports every name here; import them
from there. Split out to keep each module readable; one base (:class:`Section`) for all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from agentstream.core.errors import ConfigError
from agentstream.schemas import Resolution

__all__ = [
    "AdminLimits",
    "AnalystLimits",
    "AnalystSettings",
    "EvaluationSettings",
    "ReviewRule",
    "ReviewSettings",
    "RolloutSettings",
    "Section",
    "TenantLimits",
]


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, not silence."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReviewRule(Section):
    """A rule that sends every matching finished run to human review, sampled or not.

    ``agent_id`` and ``agent_version`` are shell-style globs (``fnmatch``, case-sensitive);
    ``outcome`` None matches both COMPLETED and FAILED runs.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    outcome: Literal["COMPLETED", "FAILED"] | None = None
    agent_id: str = "*"
    agent_version: str = "*"


class ReviewSettings(Section):
    """Review sampling (processors/review): which finished runs go to human review.

    A run is sampled when the blake2b hash of its ``run_id`` (8-byte digest, big-endian,
    divided by 2**64) is below ``sample_rate``; a run matching any rule is requested too.
    """

    #: fraction of finished runs sampled for review (0.01 = 1 %)
    sample_rate: float = Field(default=0.01, ge=0, le=1)
    #: rules that always request a review, e.g. every FAILED run of a canary version:
    #: ``[{"name": "canary-failures", "outcome": "FAILED", "agent_version": "*-rc*"}]``
    rules: tuple[ReviewRule, ...] = ()
    #: a YAML file with more rules (a list of the same mappings), read at start
    rules_path: Path | None = None


class RolloutSettings(Section):
    """The rollouts stage (processors/rollouts): verdicts per stage from the rollups."""

    #: which rollup resolution the stage reads (its figures are summed over a stage)
    resolution: Resolution = "1m"
    #: two-sided confidence of the bounds a guard is judged at
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    #: default finished runs each side needs in a stage (``rollout start --min-runs``)
    min_runs: int = Field(default=100, ge=1)
    #: default event-time length of a stage (``rollout start --min-stage``)
    min_stage_s: float = Field(default=86_400.0, ge=0)
    #: this worker may run the rollouts stage (one worker of the app at a time does: the
    #: holder of its lease, ``<prefix><app_id>-rollouts-lease``)
    enabled: bool = True
    #: the consumer group the stage reads with (it commits no offsets: its state is the
    #: compacted rollouts topic, and the rollups are re-read from the stage's start)
    consumer_group: str = "agentstream-rollouts"
    #: alert channels verdicts are sent to (through the alerts topic); empty: the defaults
    channels: tuple[str, ...] = ("log",)
    #: how far before a stage's start the rollups are re-read at start-up (Kafka timestamps)
    reread_margin_s: float = Field(default=3_600.0, ge=0)


class AnalystLimits(Section):
    """What the engine allows one analyst query (sent as the query's SETTINGS)."""

    max_execution_time_s: float = Field(default=10.0, gt=0)
    max_result_rows: int = Field(default=100_000, ge=1)
    max_result_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_memory_usage: int = Field(default=1024 * 1024 * 1024, ge=1)
    #: threads one query may use (the embedded engine runs one query at a time)
    max_threads: int = Field(default=2, ge=1)


class AdminLimits(AnalystLimits):
    """Admin keys: longer queries (a field left out keeps this default)."""

    max_execution_time_s: float = Field(default=30.0, gt=0)


class TenantLimits(AnalystLimits):
    """Tenant keys: tighter limits (a field left out keeps this default)."""

    max_execution_time_s: float = Field(default=5.0, gt=0)
    max_result_rows: int = Field(default=10_000, ge=1)
    max_memory_usage: int = Field(default=256 * 1024 * 1024, ge=1)


class AnalystSettings(Section):
    """Analyst access: API keys, limits per role, the ClickHouse HTTP interface."""

    #: API keys (hashed), written by ``agentstream keys``, read by the worker (re-read on change)
    keys_file: Path = Path(".local/analyst/keys.json")
    #: largest request body the HTTP interface reads (the key is checked before)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: lexical tokens one statement may have (parsing cost grows faster than the text)
    max_statement_words: int = Field(default=3000, ge=100)
    #: the client side (``agentstream query --key``): the key's secret
    key_secret: SecretStr | None = None
    admin: AdminLimits = AdminLimits()
    oncall: AnalystLimits = AnalystLimits()
    tenant: TenantLimits = TenantLimits()

    def limits(self, role: str) -> AnalystLimits:
        """The limits of ``role`` (admin, oncall, tenant)."""
        if role not in ("admin", "oncall", "tenant"):
            raise ConfigError(f"unknown analyst role {role!r}")
        limits: AnalystLimits = getattr(self, role)
        return limits


class EvaluationSettings(Section):
    """Comparisons with significance (``agentstream compare``, ``eval report``)."""

    #: confidence of the intervals; the tests are two-sided at 1 - confidence
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    #: the power a sample must have to detect ``--mde`` (the small-sample warning)
    power: float = Field(default=0.8, gt=0.5, lt=1)
    #: resamples of the (run-level) bootstrap behind percentile comparisons
    bootstrap_iterations: int = Field(default=2000, ge=100)
    #: seed of the bootstrap's random generator: the same data gives the same interval
    bootstrap_seed: int = 16
    #: below this many successes or failures on a side the normal approximation of a
    #: proportion test is flagged as unreliable
    min_expected_count: int = Field(default=5, ge=1)
