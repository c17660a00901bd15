"""The stored state of one rule on one scope: its timeline and what was sent.

:meth:`RuleState.to_dict` is the plain JSON-safe dict the engine's changelog keeps;
:meth:`RuleState.from_dict` reads it back (and reads version 1, written before windows were
kept for correction, as a base with no windows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from agentstream.processors.alerts._timeline import (
    Machine,
    Status,
    Window,
    machine_from_json,
    machine_to_json,
    number,
    text,
    time,
    ts,
    window_from_json,
    window_to_json,
)
from agentstream.schemas import ContractError

__all__ = ["STATE_VERSION", "RuleState"]

#: version of the :meth:`RuleState.to_dict` layout (1: no windows, read as a base)
STATE_VERSION = 2


@dataclass(frozen=True, slots=True)
class RuleState:
    """Where one rule stands on one scope: its timeline and what was sent."""

    rule_id: str
    scope_key: str
    #: the timeline after the newest window
    head: Machine = field(default_factory=Machine)
    #: the timeline after the last window that can no longer be corrected
    base: Machine = field(default_factory=Machine)
    #: the windows after ``base`` (they may still be corrected), in event-time order
    windows: tuple[Window, ...] = ()
    #: a FIRING was sent and its RESOLVED not yet
    paging: bool = False
    #: ``fired_at`` (its window's end), value and id of the last FIRING sent; the
    #: cooldown between notifications counts from ``fired_at``
    fired_at: datetime | None = None
    fired_value: float | None = None
    fired_alert_id: str | None = None

    @property
    def status(self) -> Status:
        """The timeline's status after the newest window."""
        return self.head.status

    @property
    def streak(self) -> int:
        return self.head.streak

    @property
    def last_window_end(self) -> datetime | None:
        return self.head.last_window_end

    @property
    def last_value(self) -> float | None:
        return self.head.last_value

    @property
    def idle(self) -> bool:
        """True when nothing is kept, pending or ever sent: no need to store it."""
        return (
            self.head.idle
            and self.base.idle
            and not self.windows
            and not self.paging
            and self.fired_at is None
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (timestamps as ISO-8601 text) for the engine's changelog."""
        return {
            "v": STATE_VERSION,
            "rule_id": self.rule_id,
            "scope_key": self.scope_key,
            **machine_to_json(self.head),
            "base": machine_to_json(self.base),
            "windows": [window_to_json(w) for w in self.windows],
            "paging": self.paging,
            "fired_at": ts(self.fired_at),
            "fired_value": self.fired_value,
            "fired_alert_id": self.fired_alert_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleState:
        """The state :meth:`to_dict` wrote (or version 1 wrote); :class:`ContractError`
        names a bad field."""
        version = data.get("v")
        if version not in (1, STATE_VERSION):
            raise ContractError(f"alert state.v: unsupported version {version!r}")
        try:
            head = machine_from_json(data)
            alert_id = data.get("fired_alert_id")
            state = cls(
                rule_id=text(data, "rule_id"),
                scope_key=text(data, "scope_key"),
                head=head,
                base=head,  # version 1 kept no windows: the head is the base
                paging=head.status == "FIRING",
                fired_at=time(data, "fired_at"),
                fired_value=number(data.get("fired_value"), "fired_value"),
                fired_alert_id=None if alert_id is None else text(data, "fired_alert_id"),
            )
            if version == 1:
                return state
            paging = data["paging"]
            if not isinstance(paging, bool):
                raise TypeError("paging must be true or false")
            windows = data["windows"]
            if not isinstance(windows, list):
                raise TypeError("windows must be a list")
            return replace(
                state,
                base=machine_from_json(data["base"]),
                windows=tuple(window_from_json(w) for w in windows),
                paging=paging,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"alert state: {exc}") from exc
