"""Settings sections of the pipeline's processes: lifecycle budgets, rollups, clock
sanity, alerts, the worker and telemetry.

Part of :mod:`agentstream.core.config`, which re-exports every name here; import them
from there. Split out to keep each module readable (one base, :class:`Section`).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, PositiveFloat, SecretStr, model_validator

from agentstream.core._config_sections import Section as _Section
from agentstream.schemas import RESOLUTIONS, Resolution, ScopeKind

__all__ = [
    "AlertChannelSettings",
    "AlertSettings",
    "ClockSettings",
    "LifecycleSettings",
    "RollupSettings",
    "TelemetrySettings",
    "WorkerSettings",
]


class LifecycleSettings(_Section):
    """Time budgets per state, in seconds; a run that overstays is failed (TIMEOUT)."""

    init_budget_s: float = Field(default=30.0, gt=0)
    preparing_budget_s: float = Field(default=60.0, gt=0)
    executing_budget_s: float = Field(default=600.0, gt=0)
    reviewing_budget_s: float = Field(default=300.0, gt=0)
    #: per-tool EXECUTING budgets that override ``executing_budget_s``: after each call
    #: of a listed tool the run has that tool's budget to make its next move
    executing_budget_by_tool_s: dict[str, PositiveFloat] = Field(default_factory=dict)
    #: how often the wall-clock timer looks for overdue runs
    timer_interval_s: float = Field(default=1.0, gt=0)
    #: how far past a deadline the clock must be before a run is failed (producer clock
    #: skew, lag between the transitions and tool-calls topics)
    timeout_grace_s: float = Field(default=5.0, ge=0)
    #: with no event for this long the wall clock drives timeouts (the input is caught up)
    idle_after_s: float = Field(default=2.0, gt=0)
    #: recent event ids each run remembers to drop duplicates
    dedup_ids_per_run: int = Field(default=16, ge=1)
    #: how long (event time) a finished run is kept for duplicates and late-event reasons
    terminal_retention_s: float = Field(default=3600.0, gt=0)


class RollupSettings(_Section):
    """Tumbling event-time windows."""

    #: the resolutions emitted (all are computed: each coarser tier merges the finer one)
    resolutions: tuple[Resolution, ...] = RESOLUTIONS
    #: the scope kinds the 1 d tier holds (the daily business tier reads AGENT; TENANT for
    #: per-tenant totals). GLOBAL and TOOL are left out: a 1 d cell stays open all day
    #: plus ``horizon_s``, so every kept kind adds one cell per scope per open day
    daily_scope_kinds: tuple[ScopeKind, ...] = (ScopeKind.TENANT, ScopeKind.AGENT)
    allowed_lateness_s: float = Field(default=5.0, ge=0)
    #: relative accuracy of the latency quantile sketch
    sketch_relative_accuracy: float = Field(default=0.01, gt=0, lt=1)
    #: with no event for this long the wall clock (minus the lateness) closes windows
    idle_after_s: float = Field(default=2.0, gt=0)
    #: lateness horizon: an emitted window is kept this long (event time, past its end) and
    #: emitted again, corrected, when events of its own time arrive; an event whose 1 s
    #: window ended more than this before its partition's event time is dead-lettered
    #: ("too late for its window"). The same span bounds the duplicate filter (event ids
    #: are remembered per open 1 s window)
    horizon_s: float = Field(default=600.0, ge=0)
    #: retention of the internal ``<prefix><app_id>-rollup-partials`` topic (per-partition
    #: partial cells and marks, read at once by the merge stage; set when it is created):
    #: the longest the processors may be down without losing windows in flight
    partials_retention_s: float = Field(default=7 * 86_400.0, gt=0)


class ClockSettings(_Section):
    """Clock sanity: event times no clock could have produced are dead-lettered.

    One rule for the processors and the sink (:mod:`agentstream.core.clock_sanity`).
    """

    #: an event may be this far ahead of the reader's wall clock (producer clock skew)
    max_future_skew_s: float = Field(default=300.0, ge=0)
    #: and this far behind it (a spool replayed after an outage); older is refused
    max_past_s: float = Field(default=90 * 86_400.0, gt=0)


class AlertChannelSettings(_Section):
    """One named alert channel (``AlertSettings.channels``)."""

    kind: Literal["webhook", "slack", "log", "stdout"]
    #: target of ``webhook`` / ``slack`` channels
    url: SecretStr | None = None
    #: HMAC-SHA256 key of a ``webhook`` channel (None: ``AlertSettings.webhook_secret``)
    secret: SecretStr | None = None


class AlertSettings(_Section):
    """Alert rules and channels."""

    #: YAML rule file; None: the rules packaged with agentstream (processors/alerts)
    rules_path: Path | None = None
    #: the built-in ``webhook`` channel (JSON body, HMAC-SHA256 signature header)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    #: the built-in ``slack`` channel (Slack-compatible incoming webhook)
    slack_webhook_url: SecretStr | None = None
    #: further named channels rules may route to, e.g. ``{"oncall": {"kind": "webhook", ...}}``
    channels: dict[str, AlertChannelSettings] = Field(default_factory=dict)
    #: retries after the first failed attempt; backoff doubles from ``delivery_backoff_s``
    delivery_retries: int = Field(default=5, ge=0)
    delivery_backoff_s: float = Field(default=0.5, gt=0)
    delivery_backoff_max_s: float = Field(default=30.0, gt=0)
    #: per-request HTTP timeout of webhook / Slack deliveries
    delivery_timeout_s: float = Field(default=10.0, gt=0)
    #: notifications waiting per channel; when full the oldest is dropped (counted, logged)
    queue_size: int = Field(default=1_000, ge=1)
    #: consumer group of the dispatcher reading the alerts topic
    consumer_group: str = "agentstream-alerts"
    #: alert ids the dispatcher remembers to skip a replayed message
    dedup_ids: int = Field(default=10_000, ge=1)


def _default_instance_id() -> str:
    """The host name (a container's or pod's name), made safe for Kafka ids."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "worker"


class WorkerSettings(_Section):
    """The worker process (processors, sink, alert delivery) and its web port."""

    app_id: str = "agentstream"
    web_host: str = "127.0.0.1"
    #: ``/health``, ``/ready``, ``/metrics`` (Prometheus) and the ClickHouse HTTP interface
    #: for analysts (``/``, ``/ping``); 0: any free port
    web_port: int = Field(default=6066, ge=0, le=65535)
    data_dir: Path = Path(".local/worker")
    #: a file the worker creates once it is ready (for supervisors and the demo)
    ready_file: Path | None = None
    #: a crashed component is restarted after this many seconds, doubling up to the max
    restart_backoff_s: float = Field(default=1.0, gt=0)
    restart_backoff_max_s: float = Field(default=30.0, gt=0)
    #: a component that fails more often than this within ``restart_window_s`` stops the
    #: worker with exit status 1, so that an orchestrator restarts the whole process
    max_restarts: int = Field(default=5, ge=0)
    restart_window_s: float = Field(default=300.0, gt=0)
    #: ``/ready`` answers 503 while the processors' consumer lag is above this
    ready_max_lag: int = Field(default=10_000, ge=0)
    #: this worker's stable identity (default: the host name): its static group membership
    #: (``group.instance.id``), so a restarted worker gets its partitions back at once, and
    #: its ``transactional.id`` (``<app_id>-processors-<instance_id>``), so a restarted
    #: worker fences its previous incarnation. Two live workers must never share it.
    instance_id: str = Field(default_factory=lambda: _default_instance_id(), min_length=1)
    #: the processors' state must be read from its changelog within this long, or the
    #: worker stops with an error naming how far it got
    restore_timeout_s: float = Field(default=300.0, gt=0)
    #: a component whose loop has not come round for this long is stuck (a client call that
    #: never returns, as librdkafka's ``send_offsets_to_transaction`` can while the group
    #: coordinator is away): the worker then exits with status 3 for its orchestrator to
    #: restart it. Keep it above ``restore_timeout_s`` plus a transaction's own timeouts
    #: (about 2 minutes): a restore runs inside one turn of the loop.
    stuck_after_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _stuck_after_restore(self) -> WorkerSettings:
        if self.stuck_after_s <= self.restore_timeout_s:
            raise ValueError(
                "worker.stuck_after_s must exceed worker.restore_timeout_s (a restore runs "
                "inside one turn of the processors' loop)"
            )
        return self

    @property
    def transactional_id(self) -> str:
        """The processors' transactional id: one per worker identity."""
        return f"{self.processors_group}-{self.instance_id}"

    @property
    def processors_group(self) -> str:
        """The processors' consumer group."""
        return f"{self.app_id}-processors"


class TelemetrySettings(_Section):
    """OpenTelemetry export (traces, pipeline metrics) and log format."""

    #: an OTLP/HTTP collector, e.g. ``http://collector:4318`` (``/v1/traces`` etc. appended)
    otlp_endpoint: str | None = None
    #: headers for the collector, ``name=value,name2=value2`` (e.g. an API key)
    otlp_headers: SecretStr | None = None
    #: where spans go
    exporter: Literal["none", "console", "otlp"] = "none"
    #: where pipeline metrics go; ``auto``: OTLP when ``otlp_endpoint`` is set, otherwise
    #: Prometheus text at the worker's ``/metrics``
    metrics: Literal["auto", "none", "console", "prometheus", "otlp"] = "auto"
    #: how often metrics are pushed (console, OTLP)
    metrics_interval_s: float = Field(default=10.0, gt=0)
    service_name: str = "agentstream"
    #: ``json``: one JSON object per line with the trace and span ids
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _otlp_needs_an_endpoint(self) -> Self:
        if self.otlp_endpoint is None and "otlp" in (self.exporter, self.metrics):
            raise ValueError("otlp_endpoint: required when traces or metrics go to OTLP")
        return self

    @property
    def metrics_exporter(self) -> Literal["none", "console", "prometheus", "otlp"]:
        """``metrics`` with ``auto`` resolved."""
        if self.metrics == "auto":
            return "otlp" if self.otlp_endpoint else "prometheus"
        return self.metrics
