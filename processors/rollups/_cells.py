"""Scopes, and the figures of one scope in one window (a *cell*).

Scopes (which events a rollup aggregates; every non-global scope belongs to one
tenant, so a tenant analyst's rollups never mix in another tenant's traffic):

=========  =============================================  ===============================
kind       key                                            events
=========  =============================================  ===============================
GLOBAL     ``global``                                     all
TENANT     ``tenant=<tenant>``                            all of the tenant
AGENT      ``tenant=<tenant>/agent=<agent>@<version>``    all of one agent version
TOOL       ``tenant=<tenant>/tool=<tool>``                tool calls of one tool
=========  =============================================  ===============================

Ids containing ``%``, ``/``, ``=`` or ``@`` are percent-escaped in keys, so two
scopes never share a key.

Figures: tool calls give ``count``, the status and error-class splits and the
latency sketch; model calls give ``model_calls``, tokens and cost; lifecycle
transitions give runs started (→INIT), completed and failed, and time in each
state (``dwell_ms`` of the state a transition leaves); review decisions give
``reviews`` and ``overrides``; a run that starts (INIT) with a ``parent_run_id`` counts one
``handoffs``, and a COMPLETED transition adds its ``value_usd``. Cost and value are kept in
integer nano-dollars so sums are
exact whatever the merge order. Every event adds its ``redactions`` (what the
Emitter's redaction replaced, by kind) to the cell's ``redactions``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, NotRequired, TypedDict
from urllib.parse import quote

from agentstream.schemas import ScopeKind

__all__ = ["FIGURES", "Cell", "CellJson", "Scope", "ScopeJson", "add_redactions", "scopes_of"]

#: the integer figures of a cell, in storage order
FIGURES: Final[tuple[str, ...]] = (
    "count",
    "success",
    "partial",
    "error",
    "retryable",
    "non_retryable",
    "timeout",
    "late_events",
    "zero_latency",
    "tokens_in",
    "tokens_out",
    "cost_nusd",
    "model_calls",
    "runs_started",
    "runs_completed",
    "runs_failed",
    "reviews",
    "overrides",
    "handoffs",
    "value_nusd",
)
(
    COUNT,
    SUCCESS,
    PARTIAL,
    ERROR,
    RETRYABLE,
    NON_RETRYABLE,
    TIMEOUT,
    LATE,
    ZERO_LATENCY,
    TOKENS_IN,
    TOKENS_OUT,
    COST_NUSD,
    MODEL_CALLS,
    RUNS_STARTED,
    RUNS_COMPLETED,
    RUNS_FAILED,
    REVIEWS,
    OVERRIDES,
    HANDOFFS,
    VALUE_NUSD,
) = range(len(FIGURES))

NANO: Final = 1_000_000_000
_SPECIAL = frozenset("%/=@")


def _esc(value: str) -> str:
    return quote(value, safe="") if _SPECIAL.intersection(value) else value


@dataclass(frozen=True, slots=True)
class Scope:
    """What a rollup aggregates over: kind, key, and the ids that define it."""

    kind: ScopeKind
    key: str
    tenant_id: str | None = None
    agent_id: str | None = None
    agent_version: str | None = None
    tool: str | None = None

    def to_json(self) -> ScopeJson:
        """JSON-able form."""
        return {
            "kind": self.kind.value,
            "key": self.key,
            "tenant_id": self.tenant_id,
            "agent_id": self.agent_id,
            "agent_version": self.agent_version,
            "tool": self.tool,
        }

    @classmethod
    def from_json(cls, data: ScopeJson) -> Scope:
        """Read :meth:`to_json`."""
        return cls(
            ScopeKind(data["kind"]),
            data["key"],
            data["tenant_id"],
            data["agent_id"],
            data["agent_version"],
            data["tool"],
        )


class ScopeJson(TypedDict):
    """JSON-able :class:`Scope`."""

    kind: str
    key: str
    tenant_id: str | None
    agent_id: str | None
    agent_version: str | None
    tool: str | None


GLOBAL_SCOPE: Final = Scope(ScopeKind.GLOBAL, "global")


def scopes_of(
    tenant_id: str, agent_id: str, agent_version: str, tool: str | None = None
) -> tuple[Scope, ...]:
    """The scopes an event counts in: global, tenant, agent (+version), and tool if given."""
    tenant_key = f"tenant={_esc(tenant_id)}"
    scopes = [
        GLOBAL_SCOPE,
        Scope(ScopeKind.TENANT, tenant_key, tenant_id),
        Scope(
            ScopeKind.AGENT,
            f"{tenant_key}/agent={_esc(agent_id)}@{_esc(agent_version)}",
            tenant_id,
            agent_id,
            agent_version,
        ),
    ]
    if tool is not None:
        scopes.append(
            Scope(ScopeKind.TOOL, f"{tenant_key}/tool={_esc(tool)}", tenant_id, tool=tool)
        )
    return tuple(scopes)


class CellJson(TypedDict):
    """JSON-able :class:`Cell` (a value in the engine's changelog)."""

    scope: ScopeJson
    figures: dict[str, int]
    state_ms: dict[str, int]
    #: latency sketch bins, ascending keys and their counts
    keys: list[int]
    counts: list[int]
    #: redactions by kind (absent in changelogs written before it existed)
    redactions: NotRequired[dict[str, int]]


class Cell:
    """The figures of one scope in one window: integer counters, state times, sketch bins."""

    __slots__ = ("bins", "f", "redactions", "scope", "state_ms")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.f: list[int] = [0] * len(FIGURES)
        self.state_ms: dict[str, int] = {}
        self.bins: dict[int, int] = {}
        self.redactions: dict[str, int] = {}

    def merge(self, other: Cell) -> None:
        """Add ``other``'s figures (same scope) to this cell."""
        f, g = self.f, other.f
        for i in range(len(f)):
            f[i] += g[i]
        for state, ms in other.state_ms.items():
            self.state_ms[state] = self.state_ms.get(state, 0) + ms
        bins = self.bins
        for key, count in other.bins.items():
            bins[key] = bins.get(key, 0) + count
        for kind, n in other.redactions.items():
            self.redactions[kind] = self.redactions.get(kind, 0) + n

    def to_json(self) -> CellJson:
        """JSON-able form (zero figures left out)."""
        bins = self.bins
        keys = sorted(bins)
        return {
            "scope": self.scope.to_json(),
            "figures": {name: v for name, v in zip(FIGURES, self.f, strict=True) if v},
            "state_ms": dict(self.state_ms),
            "keys": keys,
            "counts": [bins[k] for k in keys],
            "redactions": dict(self.redactions),
        }

    @classmethod
    def from_json(cls, data: CellJson) -> Cell:
        """Read :meth:`to_json`."""
        cell = cls(Scope.from_json(data["scope"]))
        figures = data["figures"]
        cell.f = [int(figures.get(name, 0)) for name in FIGURES]
        cell.state_ms = {str(k): int(v) for k, v in data["state_ms"].items()}
        cell.bins = dict(zip(data["keys"], data["counts"], strict=True))
        cell.redactions = {str(k): int(v) for k, v in data.get("redactions", {}).items()}
        return cell


def add_redactions(cells: Iterable[Cell], counts: Mapping[str, int]) -> None:
    """Add an event's ``redactions`` (kind -> replacements) to each of its cells."""
    for cell in cells:
        mine = cell.redactions
        for kind, n in counts.items():
            mine[kind] = mine.get(kind, 0) + n
