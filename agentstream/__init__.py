"""agentstream: the event backbone for AI agents in production.

The SDK agents use::

    from agentstream import Emitter, run_context

    emitter = Emitter()                      # settings from AGENTSTREAM_* / agentstream.toml
    with run_context(tenant_id="acme", agent_id="planner", agent_version="1.4.0"):
        with emitter.tool_call("search", params={"q": query}) as call:
            call.result_summary = summarize(search(query))

``import agentstream`` is cheap: names are imported on first use.
"""

from __future__ import annotations

from importlib import import_module

# not ``typing.TYPE_CHECKING``: importing typing alone would double this module's import time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from agentstream._classify import classify_error
    from agentstream._context import RunContext, current_context, run_context
    from agentstream._emitter import Emitter, EmitterStats
    from agentstream._redact import Redactor
    from agentstream._toolcall import ToolCallScope, current_tool_call
    from agentstream.config import Settings, get_settings, load_settings
    from agentstream.errors import (
        AgentstreamError,
        ConfigError,
        ContractError,
        DeliveryError,
        EventValidationError,
    )
    from schemas import (
        AgentState,
        CallStatus,
        Decision,
        ErrorClass,
        ModelCall,
        Retention,
        ReviewDecision,
        StateTransition,
        ToolCall,
    )

__all__ = [
    "AgentState",
    "AgentstreamError",
    "CallStatus",
    "ConfigError",
    "ContractError",
    "Decision",
    "DeliveryError",
    "Emitter",
    "EmitterStats",
    "ErrorClass",
    "EventValidationError",
    "ModelCall",
    "Redactor",
    "Retention",
    "ReviewDecision",
    "RunContext",
    "Settings",
    "StateTransition",
    "ToolCall",
    "ToolCallScope",
    "classify_error",
    "current_context",
    "current_tool_call",
    "get_settings",
    "load_settings",
    "run_context",
]

#: where each public name lives (imported on first access)
_HOMES: dict[str, str] = {
    "classify_error": "agentstream._classify",
    "RunContext": "agentstream._context",
    "current_context": "agentstream._context",
    "run_context": "agentstream._context",
    "Emitter": "agentstream._emitter",
    "EmitterStats": "agentstream._emitter",
    "Redactor": "agentstream._redact",
    "ToolCallScope": "agentstream._toolcall",
    "current_tool_call": "agentstream._toolcall",
    "Settings": "agentstream.config",
    "get_settings": "agentstream.config",
    "load_settings": "agentstream.config",
    "AgentstreamError": "agentstream.errors",
    "ConfigError": "agentstream.errors",
    "ContractError": "agentstream.errors",
    "DeliveryError": "agentstream.errors",
    "EventValidationError": "agentstream.errors",
    "AgentState": "schemas",
    "CallStatus": "schemas",
    "Decision": "schemas",
    "ErrorClass": "schemas",
    "ModelCall": "schemas",
    "Retention": "schemas",
    "ReviewDecision": "schemas",
    "StateTransition": "schemas",
    "ToolCall": "schemas",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'agentstream' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
