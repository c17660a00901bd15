"""agentstream: the event backbone for AI agents in production.

The SDK agents use::

    from agentstream import Emitter, run_context

    emitter = Emitter()                      # settings from AGENTSTREAM_* / agentstream.toml
    with run_context(tenant_id="acme", agent_id="planner", agent_version="1.4.0"):
        with emitter.tool_call("search", params={"q": query}) as call:
            call.result_summary = summarize(search(query))

``import agentstream`` is cheap: names are imported on first use. The public
names are written once, in the import block below; type checkers read it as
it stands, and at run time it is read (on the first access of a public name)
to learn where each name lives and to build ``__all__``.
"""

from __future__ import annotations

# not ``typing.TYPE_CHECKING``: importing typing alone would double this module's import time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from agentstream.core.config import Settings as Settings
    from agentstream.core.config import get_settings as get_settings
    from agentstream.core.config import load_settings as load_settings
    from agentstream.core.errors import AgentstreamError as AgentstreamError
    from agentstream.core.errors import ConfigError as ConfigError
    from agentstream.core.errors import ContractError as ContractError
    from agentstream.core.errors import DeliveryError as DeliveryError
    from agentstream.core.errors import EventValidationError as EventValidationError
    from agentstream.core.redact import Redactor as Redactor
    from agentstream.emitter import Emitter as Emitter
    from agentstream.emitter import EmitterStats as EmitterStats
    from agentstream.emitter import RunContext as RunContext
    from agentstream.emitter import ToolCallScope as ToolCallScope
    from agentstream.emitter import classify_error as classify_error
    from agentstream.emitter import current_context as current_context
    from agentstream.emitter import current_tool_call as current_tool_call
    from agentstream.emitter import run_context as run_context
    from agentstream.schemas import AgentState as AgentState
    from agentstream.schemas import CallStatus as CallStatus
    from agentstream.schemas import Decision as Decision
    from agentstream.schemas import ErrorClass as ErrorClass
    from agentstream.schemas import EvalResult as EvalResult
    from agentstream.schemas import Feedback as Feedback
    from agentstream.schemas import ModelCall as ModelCall
    from agentstream.schemas import Retention as Retention
    from agentstream.schemas import ReviewDecision as ReviewDecision
    from agentstream.schemas import StateTransition as StateTransition
    from agentstream.schemas import ToolCall as ToolCall

_homes: dict[str, str] | None = None


def _public_homes() -> dict[str, str]:
    """``{public name: module}``, read from the ``TYPE_CHECKING`` block above."""
    global _homes
    if _homes is None:
        import ast

        with open(__file__, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        block = next(
            n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
        )
        _homes = {
            alias.asname: node.module
            for node in block.body
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("agentstream")
            for alias in node.names
            if alias.asname
        }
    return _homes


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return sorted(_public_homes())
    home = _public_homes().get(name)
    if home is None:
        raise AttributeError(f"module 'agentstream' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(home), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_public_homes()))
