"""Alert rules: the model of one rule, its scope filter, a set of rules.

Rule keys (YAML): ``id``, ``description``, ``metric`` (see the metric catalogue),
``scope`` (``per agent`` or ``{per: tool, tenant: acme, agent: "planner*"}``),
``resolution`` (1s, 1m, 1h, 1d), ``comparator`` (> >= < <= == !=), ``threshold``
(ratios are fractions, also ``"5%"``; latencies are ms, also ``"10s"``), ``for``
(consecutive breaching windows before FIRING), ``resolve_for``, ``min_samples``,
``cooldown`` (``5m``), ``stale_after``, ``severity``, ``channels``, ``enabled``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agentstream.core.durations import parse_duration
from agentstream.processors.alerts._metrics import METRICS, Metric, resolve_metric
from agentstream.schemas import (
    RESOLUTION_SECONDS,
    Comparator,
    Resolution,
    Rollup,
    ScopeKind,
    Severity,
)

__all__ = ["BUILTIN_CHANNELS", "Rule", "RuleSet", "ScopeFilter"]

#: channel names every installation knows (unconfigured ones are skipped at delivery)
BUILTIN_CHANNELS = ("log", "stdout", "webhook", "slack")

_RESOLUTION_S: dict[str, float] = {r: float(s) for r, s in RESOLUTION_SECONDS.items()}

RuleId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
ChannelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
Patterns = tuple[Annotated[str, StringConstraints(min_length=1, max_length=256)], ...]
ScopeName = Literal["global", "tenant", "agent", "tool"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ScopeFilter(_Strict):
    """Which rollups a rule reads: one scope kind (``per``), optionally narrowed.

    ``per`` picks the rollup scope the rule is evaluated on, each scope key
    separately ("per tool": every tool has its own alert state). ``tenant``,
    ``agent``, ``version`` and ``tool`` keep only rollups whose field matches
    one of the given glob patterns (``"planner*"``).
    """

    per: ScopeName = "global"
    tenant: Patterns | None = None
    agent: Patterns | None = None
    version: Patterns | None = None
    tool: Patterns | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            words = data.lower().split()
            if len(words) == 2 and words[0] in ("per", "each"):
                words = words[1:]
            return {"per": words[0] if len(words) == 1 else data}
        return data

    @field_validator("per", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("tenant", "agent", "version", "tool", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        values = [value] if isinstance(value, str | int | float) else value
        if isinstance(values, list | tuple):
            return tuple(str(v) if isinstance(v, int | float) else v for v in values)
        return values

    @model_validator(mode="after")
    def _global_has_no_filters(self) -> ScopeFilter:
        if self.per == "global" and any(self._filters()):
            raise ValueError(
                "global rollups carry no tenant/agent/version/tool; "
                "set per: tenant, agent or tool to filter"
            )
        return self

    def _filters(self) -> list[tuple[str, Patterns]]:
        pairs = [
            ("tenant_id", self.tenant),
            ("agent_id", self.agent),
            ("agent_version", self.version),
            ("tool", self.tool),
        ]
        return [(field, pats) for field, pats in pairs if pats is not None]

    @property
    def scope_kind(self) -> ScopeKind:
        """The rollup scope kind this filter reads."""
        return ScopeKind(self.per.upper())

    def matches(self, rollup: Rollup) -> bool:
        """True when ``rollup`` is of this scope kind and passes every filter."""
        if rollup.scope_kind != self.scope_kind:
            return False
        for field, patterns in self._filters():
            actual = getattr(rollup, field)
            if actual is None or not any(fnmatchcase(actual, p) for p in patterns):
                return False
        return True

    def describe(self) -> str:
        """``per agent (tenant=acme)`` style text."""
        filters = ", ".join(f"{f}={'|'.join(p)}" for f, p in self._filters())
        return f"per {self.per}" + (f" ({filters})" if filters else "")


class Rule(_Strict):
    """One alert rule (see the module docstring for the file format)."""

    id: RuleId
    description: str = Field(default="", max_length=1024)
    #: canonical metric name (aliases such as ``latency_p95`` are accepted on input)
    metric: str
    scope: ScopeFilter = ScopeFilter()
    resolution: Resolution = "1m"
    comparator: Comparator = ">"
    threshold: float = Field(allow_inf_nan=False)
    #: consecutive breaching windows before FIRING
    for_windows: int = Field(default=1, ge=1, le=10_000, alias="for")
    #: consecutive clear windows before RESOLVED
    resolve_for: int = Field(default=1, ge=1, le=10_000)
    #: windows with fewer samples (see the metric catalogue) neither fire nor keep pending
    min_samples: int = Field(default=1, ge=0)
    #: least event time between two FIRING notifications of one rule and scope
    cooldown_s: float = Field(default=300.0, ge=0, alias="cooldown")
    #: resolve a FIRING alert whose scope sent no rollup for this long (None: never)
    stale_after_s: float | None = Field(default=None, gt=0, alias="stale_after")
    severity: Severity = Severity.WARNING
    channels: tuple[ChannelName, ...] = Field(default=("log",), min_length=1)
    enabled: bool = True

    @field_validator("metric", mode="before")
    @classmethod
    def _metric(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return resolve_metric(value.strip()).name
        except KeyError:
            raise ValueError(
                f"unknown metric {value!r}; known: {', '.join(sorted(METRICS))}"
            ) from None

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("cooldown_s", "stale_after_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value: Any, info: ValidationInfo) -> Any:
        metric = METRICS.get(str(info.data.get("metric")))
        if isinstance(value, bool):
            raise ValueError("must be a number")
        if isinstance(value, str):
            text = value.strip()
            if text.endswith("%"):
                try:
                    return float(text[:-1]) / 100.0
                except ValueError:
                    raise ValueError(f"not a percentage: {value!r}") from None
            if metric is not None and metric.unit == "ms":
                return parse_duration(text) * 1000.0
        return value

    @model_validator(mode="after")
    def _sensible(self) -> Rule:
        if self.metric_info.unit == "ratio" and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(
                f"threshold: {self.metric} is a fraction between 0 and 1; "
                f"write {self.threshold / 100:g} or '{self.threshold:g}%'"
            )
        return self

    @property
    def metric_info(self) -> Metric:
        """The catalogue entry of :attr:`metric`."""
        return METRICS[self.metric]

    @property
    def window_s(self) -> float:
        """Length of one window of :attr:`resolution`, in seconds."""
        return _RESOLUTION_S[self.resolution]

    def matches(self, rollup: Rollup) -> bool:
        """True when this enabled rule reads ``rollup`` (resolution and scope)."""
        return self.enabled and rollup.resolution == self.resolution and self.scope.matches(rollup)

    def breached(self, value: float) -> bool:
        """True when ``value`` <comparator> ``threshold``."""
        t = self.threshold
        match self.comparator:
            case ">":
                return value > t
            case ">=":
                return value >= t
            case "<":
                return value < t
            case "<=":
                return value <= t
            case "==":
                return value == t
            case _:
                return value != t


class RuleSet:
    """The rules of one file, by id, with a lookup of the rules reading a rollup.

    ``horizon_s``: how long (event time, past the newest window of a rule and scope) a
    window may still be corrected by the rollups (``rollups.horizon_s``); 0: never.
    """

    def __init__(
        self, rules: Iterable[Rule], source: str = "<rules>", *, horizon_s: float = 0.0
    ) -> None:
        self.source = source
        self.horizon_s = horizon_s
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._by_id = {rule.id: rule for rule in self.rules}
        self._by_kind: dict[tuple[str, ScopeKind], list[Rule]] = {}
        for rule in self.rules:
            if rule.enabled:
                key = (rule.resolution, rule.scope.scope_kind)
                self._by_kind.setdefault(key, []).append(rule)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id, or None."""
        return self._by_id.get(rule_id)

    def __getitem__(self, rule_id: str) -> Rule:
        return self._by_id[rule_id]

    def matching(self, rollup: Rollup) -> list[Rule]:
        """The enabled rules that read ``rollup``."""
        candidates = self._by_kind.get((rollup.resolution, rollup.scope_kind), ())
        return [rule for rule in candidates if rule.scope.matches(rollup)]

    @property
    def channels(self) -> set[str]:
        """Every channel name some rule routes to."""
        return {name for rule in self.rules for name in rule.channels}
