"""The Avro enums of the contract, as :class:`enum.StrEnum` (value == Avro symbol).

Member order is the Avro symbol order; a test checks both stay identical.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AgentState",
    "AlertState",
    "CallStatus",
    "Decision",
    "ErrorClass",
    "Retention",
    "ScopeKind",
    "Severity",
]


class CallStatus(StrEnum):
    """Outcome of a tool or model call."""

    SUCCESS = "SUCCESS"
    PARTIAL = "PARTIAL"
    ERROR = "ERROR"


class ErrorClass(StrEnum):
    """How a failed call failed; ``NONE`` for a success."""

    NONE = "NONE"
    RETRYABLE = "RETRYABLE"
    NON_RETRYABLE = "NON_RETRYABLE"
    TIMEOUT = "TIMEOUT"


class Retention(StrEnum):
    """Retention class: BUSINESS (90 days by default) or LEGAL (7 years by default)."""

    BUSINESS = "BUSINESS"
    LEGAL = "LEGAL"


class AgentState(StrEnum):
    """A run's lifecycle state."""

    INIT = "INIT"
    PREPARING = "PREPARING"
    EXECUTING = "EXECUTING"
    REVIEWING = "REVIEWING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class Decision(StrEnum):
    """A human reviewer's decision; OVERRIDDEN means the human replaced the outcome."""

    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    OVERRIDDEN = "OVERRIDDEN"


class ScopeKind(StrEnum):
    """What a rollup aggregates over."""

    GLOBAL = "GLOBAL"
    TENANT = "TENANT"
    AGENT = "AGENT"
    TOOL = "TOOL"


class AlertState(StrEnum):
    """State of an alert."""

    FIRING = "FIRING"
    RESOLVED = "RESOLVED"


class Severity(StrEnum):
    """How urgent an alert is."""

    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
