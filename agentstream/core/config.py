"""All of agentstream's settings, in one place.

Every component reads one section of :class:`Settings`; nothing else in the
code base holds a topic name, a retention period, a budget, a threshold or a
batch size as a constant.

Sources, highest priority first:

1. keyword arguments to :func:`load_settings` (tests, embedding code);
2. environment variables, prefixed ``AGENTSTREAM_``; a section's field is
   ``AGENTSTREAM_<SECTION>__<FIELD>``, e.g. ``AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS``;
3. a TOML file named by ``AGENTSTREAM_CONFIG`` (default ``agentstream.toml``
   in the working directory, if present), one table per section;
4. the embedded defaults below: a local broker on ``127.0.0.1:9092`` and an
   embedded ClickHouse (chdb) in ``.local/chdb``.

A wrong value raises :class:`agentstream.core.errors.ConfigError`, whose message
names the environment variable (``AGENTSTREAM_KAFKA__PORT: ...``).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from agentstream.core._config_runtime import (
    AlertChannelSettings,
    AlertSettings,
    ClockSettings,
    LifecycleSettings,
    RollupSettings,
    TelemetrySettings,
    WorkerSettings,
)
from agentstream.core._config_sections import (
    AdminLimits,
    AnalystLimits,
    AnalystSettings,
    EvaluationSettings,
    ReviewRule,
    ReviewSettings,
    RolloutSettings,
    TenantLimits,
)
from agentstream.core._config_sections import Section as _Section
from agentstream.core.errors import ConfigError

__all__ = [
    "AdminLimits",
    "AlertChannelSettings",
    "AlertSettings",
    "AnalystLimits",
    "AnalystSettings",
    "ClickHouseSettings",
    "ClockSettings",
    "EmitterSettings",
    "EvaluationSettings",
    "KafkaSettings",
    "LifecycleSettings",
    "LocalKafkaSettings",
    "RetentionSettings",
    "ReviewRule",
    "ReviewSettings",
    "RolloutSettings",
    "RollupSettings",
    "Settings",
    "SinkSettings",
    "TelemetrySettings",
    "TenantLimits",
    "TopicSettings",
    "WorkerSettings",
    "get_settings",
    "load_settings",
    "settings_env",
]

#: the redaction kinds, in the order the text passes run (``agentstream.core.redact``)
REDACT_KINDS: Final = (
    "private_key",
    "webhook",
    "password",
    "bearer",
    "jwt",
    "api_key",
    "aws_secret",
    "secret",
    "email",
    "iban",
    "card",
    "phone",
)
PhoneLeniency = Literal["POSSIBLE", "VALID", "STRICT_GROUPING", "EXACT_GROUPING"]

ENV_PREFIX = "AGENTSTREAM_"
ENV_DELIMITER = "__"
CONFIG_FILE_ENV = "AGENTSTREAM_CONFIG"
DEFAULT_CONFIG_FILE = "agentstream.toml"

_DAYS_PER_YEAR = 365.25


#: the kinds of Kafka client agentstream runs (``agentstream.core.kafka``)
KafkaRole = Literal[
    "emitter", "processors", "restore", "sink", "alerts", "rollouts", "tools", "admin"
]


class KafkaSettings(_Section):
    """How every component reaches Kafka. SASL/TLS values pass through to the clients."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "agentstream"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    #: partitions and replication used when agentstream creates its topics
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    #: librdkafka settings per client role (``emitter``, ``processors``, ``restore``,
    #: ``sink``, ``alerts``, ``tools``, ``admin``), applied over agentstream's defaults
    overrides: dict[KafkaRole, dict[str, str | int | float | bool]] = Field(default_factory=dict)

    def confluent_config(self) -> dict[str, str]:
        """The connection part of a confluent-kafka (librdkafka) configuration."""
        conf: dict[str, str] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile is not None:
            conf["ssl.ca.location"] = str(self.ssl_cafile)
        if self.ssl_certfile is not None:
            conf["ssl.certificate.location"] = str(self.ssl_certfile)
        if self.ssl_keyfile is not None:
            conf["ssl.key.location"] = str(self.ssl_keyfile)
        return conf


class TopicSettings(_Section):
    """Topic names: ``prefix`` + the per-stream name."""

    prefix: str = "agent."
    tool_calls: str = "tool_calls"
    model_calls: str = "model_calls"
    transitions: str = "transitions"
    reviews: str = "reviews"
    #: validated transitions and synthesized timeouts, with dwell times (processor output)
    lifecycle: str = "lifecycle"
    invalid: str = "invalid"
    rollups: str = "rollups"
    alerts: str = "alerts"
    #: runs picked for human review (processor output)
    review_requests: str = "review_requests"
    #: rollout definitions and state, compacted, keyed by agent
    rollouts: str = "rollouts"
    #: PROMOTE / HOLD / ROLLBACK verdicts of the rollouts stage
    rollout_verdicts: str = "rollout_verdicts"
    #: pre-deployment benchmark results (EvalResult) and end-user feedback (Feedback)
    eval_results: str = "eval_results"
    feedback: str = "feedback"

    def name(self, stream: str) -> str:
        """The full topic name of ``stream`` (one of this section's fields)."""
        if stream not in _TOPIC_STREAMS:
            raise ConfigError(f"unknown stream {stream!r}; known: {', '.join(_TOPIC_STREAMS)}")
        return f"{self.prefix}{getattr(self, stream)}"

    def all(self) -> dict[str, str]:
        """Every stream and its full topic name."""
        return {stream: self.name(stream) for stream in _TOPIC_STREAMS}


#: the stream names: every field of :class:`TopicSettings` but the prefix
_TOPIC_STREAMS = tuple(name for name in TopicSettings.model_fields if name != "prefix")


class LocalKafkaSettings(_Section):
    """The project-run Apache Kafka broker (KRaft, combined broker + controller)."""

    version: str = "4.1.1"
    scala_version: str = "2.13"
    home: Path = Path(".local/kafka")
    host: str = "127.0.0.1"
    port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    heap: str = "512m"
    start_timeout_s: float = Field(default=60.0, gt=0)
    #: SIGTERM grace before ``down`` sends SIGKILL
    stop_timeout_s: float = Field(default=30.0, gt=0)
    java: str = "java"
    mvn: str = "mvn"
    #: root of the jar cache (``<cache_dir>/<version>/libs``); None: ``home``
    cache_dir: Path | None = None
    #: passed to mvn as ``-Dmaven.repo.local`` when set; None: mvn's default (~/.m2)
    maven_repo_local: Path | None = None


class EmitterSettings(_Section):
    """The thin producer agents use."""

    linger_ms: int = Field(default=5, ge=0)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    batch_size_bytes: int = Field(default=256 * 1024, ge=1)
    queue_max_messages: int = Field(default=500_000, ge=1)
    #: memory bound of the producer's local queue (librdkafka ``queue.buffering.max.kbytes``)
    queue_max_kbytes: int = Field(default=256 * 1024, ge=1)
    delivery_timeout_ms: int = Field(default=30_000, ge=1)
    #: ``memory``: an event is in the producer's memory queue when ``emit`` returns (a
    #: crash of the process loses what Kafka has not acknowledged yet); ``disk``: it was
    #: also written to a write-ahead log in ``spool_dir`` (a SIGKILL loses nothing)
    durability: Literal["memory", "disk"] = "memory"
    #: disk durability: how often the log is fsynced (a power loss can lose this much);
    #: 0: fsync before ``emit`` returns (concurrent callers share one fsync)
    wal_fsync_interval_ms: int = Field(default=100, ge=0)
    #: disk durability: a log segment is closed at this size (retired once all is acknowledged)
    wal_segment_bytes: int = Field(default=4 * 1024 * 1024, ge=4096)
    #: memory durability: validation, redaction and Avro encoding run on a background
    #: thread (``emit`` checks required fields and their types at the call site; an event
    #: refused later becomes a dead letter with the reason); False: all on the caller
    encode_in_background: bool = True
    #: memory durability: events waiting for the encoder thread; beyond it, each caller
    #: encodes the oldest waiting events itself before queueing its own (in order)
    encoder_queue_max: int = Field(default=10_000, ge=1)
    #: memory durability: how long the encoder thread lets events gather once one
    #: waits, before it takes the GIL to encode them all (fewer interruptions of the
    #: agent's thread; adds up to this much before an event reaches the producer)
    encoder_linger_ms: float = Field(default=20.0, ge=0)
    #: events that could not be delivered are appended here and re-sent later
    spool_dir: Path = Path(".local/spool")
    #: a spool segment file is closed (and becomes replayable) at this size
    spool_segment_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)
    #: while the spool holds events, how often the broker is probed to replay them
    replay_interval_s: float = Field(default=5.0, gt=0)
    #: largest encoded event accepted by ``emit``
    max_event_bytes: int = Field(default=256 * 1024, ge=1024)
    #: ``single_object`` (no registry) or ``confluent`` (needs ``registry_url``)
    framing: Literal["single_object", "confluent"] = "single_object"
    registry_url: str | None = None
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    redact: bool = True
    #: built-in redaction kinds applied (every kind of :mod:`agentstream.core.redact`)
    redact_kinds: tuple[str, ...] = REDACT_KINDS
    #: region of phone numbers written without a ``+country`` prefix (libphonenumber)
    redact_phone_region: str = Field(default="US", pattern=r"^[A-Za-z]{2}$")
    #: how sure libphonenumber must be that a candidate is a phone number
    redact_phone_leniency: PhoneLeniency = "VALID"
    #: extra redaction regexes, name → pattern (matches become ``[REDACTED:<name>]``)
    redact_patterns: dict[str, str] = Field(default_factory=dict)
    flush_at_exit_s: float = Field(default=10.0, ge=0)
    #: runs whose last state ``transition()`` remembers (least recently used are forgotten)
    max_tracked_runs: int = Field(default=100_000, ge=1)


class ClickHouseSettings(_Section):
    """Where the audit trail lives: embedded chdb (default) or a ClickHouse server."""

    backend: Literal["embedded", "server"] = "embedded"
    path: Path = Path(".local/chdb")
    host: str = "127.0.0.1"
    port: int = Field(default=8123, ge=1, le=65535)
    username: str = "default"
    password: SecretStr = SecretStr("")
    database: str = "agentstream"
    secure: bool = False
    connect_timeout_s: float = Field(default=10.0, gt=0)
    #: server backend: the read-only user analyst queries run as (never the writer above);
    #: ``agentstream migrate --print`` prints the DDL that creates it
    analyst_username: str = Field(
        default="agentstream_analyst", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"
    )
    analyst_password: SecretStr = SecretStr("")
    #: TEST HOOK (fault injection, ``agentstream soak``): while this file exists every insert
    #: fails as if ClickHouse were unavailable (``sinks/clickhouse/_faults.py``). None: off
    fault_file: Path | None = None


class RetentionSettings(_Section):
    """Tiered retention, rendered into the DDL's TTL clauses."""

    business_days: int = Field(default=90, ge=1)
    legal_days: int = Field(default=round(7 * _DAYS_PER_YEAR), ge=1)
    rollups_1s_days: int = Field(default=7, ge=1)
    rollups_1m_days: int = Field(default=90, ge=1)
    rollups_1h_days: int = Field(default=round(7 * _DAYS_PER_YEAR), ge=1)
    #: the 1 d tier (``rollups_1d``: the daily business tier's tasks, cost, value, hand-offs)
    rollups_1d_days: int = Field(default=730, ge=1)
    #: volume of the server's storage policy that cold parts move to (None: no move)
    cold_volume: str | None = None
    storage_policy: str | None = None
    cold_after_days: int = Field(default=30, ge=1)


class SinkSettings(_Section):
    """The ClickHouse sink: batching, retries, back-pressure."""

    batch_size: int = Field(default=5_000, ge=1)
    flush_interval_s: float = Field(default=1.0, gt=0)
    max_buffered_rows: int = Field(default=100_000, ge=1)
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)
    consumer_group: str = "agentstream-sink"
    #: recent insert blocks each table remembers to drop a replayed batch
    #: (``non_replicated_deduplication_window``; rendered into the DDL)
    dedup_window: int = Field(default=1_000, ge=1)
    #: redact free text (params, summaries, reasons, comments) again before storing it,
    #: with the Emitter's rules; what this pass adds is counted in ``sink_redactions``
    redact: bool = True
    #: as ``emitter.redact_phone_region`` / ``emitter.redact_phone_leniency``
    redact_phone_region: str = Field(default="US", pattern=r"^[A-Za-z]{2}$")
    redact_phone_leniency: PhoneLeniency = "VALID"


class Settings(BaseSettings):
    """The whole configuration; each component reads its own section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    local_kafka: LocalKafkaSettings = LocalKafkaSettings()
    emitter: EmitterSettings = EmitterSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    retention: RetentionSettings = RetentionSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    rollups: RollupSettings = RollupSettings()
    clock: ClockSettings = ClockSettings()
    sink: SinkSettings = SinkSettings()
    alerts: AlertSettings = AlertSettings()
    review: ReviewSettings = ReviewSettings()
    rollouts: RolloutSettings = RolloutSettings()
    worker: WorkerSettings = WorkerSettings()
    analyst: AnalystSettings = AnalystSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    @field_validator("*", mode="before")
    @classmethod
    def _none_means_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlSource(settings_cls)


class _TomlSource(PydanticBaseSettingsSource):
    """The optional TOML file named by ``AGENTSTREAM_CONFIG``."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = _read_config_file()

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _read_config_file() -> dict[str, Any]:
    explicit = os.environ.get(CONFIG_FILE_ENV)
    path = Path(explicit or DEFAULT_CONFIG_FILE)
    if not path.is_file():
        if explicit:
            raise ConfigError(f"{CONFIG_FILE_ENV}: no such file: {path}")
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}: cannot read {path}: {exc}") from exc


def _setting_name(loc: tuple[int | str, ...]) -> str:
    """``('kafka', 'port')`` → ``AGENTSTREAM_KAFKA__PORT``."""
    parts = [str(part) for part in loc if not isinstance(part, int)]
    return ENV_PREFIX + ENV_DELIMITER.join(part.upper() for part in parts)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from overrides, the environment and the config file.

    Raises :class:`ConfigError` naming the offending setting(s).
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{_setting_name(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from exc
    except SettingsError as exc:  # e.g. a dict or list setting whose env value is not JSON
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise ConfigError(f"invalid configuration: {exc}{cause}") from exc


def settings_env(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The overrides :func:`load_settings` takes, as a child process's environment.

    ``{"kafka": {"bootstrap_servers": "x"}}`` → ``{"AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": "x"}``;
    dicts and lists are written as JSON, as the settings read them.
    """
    return {
        f"{ENV_PREFIX}{section.upper()}{ENV_DELIMITER}{name.upper()}": _env_value(value)
        for section, fields in overrides.items()
        for name, value in fields.items()
        if value is not None  # unset: the default applies
    }


def _env_value(value: Any) -> str:
    """One setting as the environment carries it: JSON for dicts, lists and tuples."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict | list | tuple):
        return json.dumps(
            value, default=lambda v: v.get_secret_value() if isinstance(v, SecretStr) else str(v)
        )
    return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (call ``get_settings.cache_clear()`` to re-read)."""
    return load_settings()
