"""The thin producer agents import: run context, tool-call scopes, the Kafka emitter, its spool."""

from agentstream.emitter._classify import classify_error
from agentstream.emitter._context import RunContext, current_context, run_context
from agentstream.emitter._emitter import Emitter, EmitterStats
from agentstream.emitter._toolcall import ToolCallScope, current_tool_call

__all__ = [
    "Emitter",
    "EmitterStats",
    "RunContext",
    "ToolCallScope",
    "classify_error",
    "current_context",
    "current_tool_call",
    "run_context",
]
