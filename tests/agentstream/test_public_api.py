"""The public API of ``agentstream``: exactly these names, importable, and a cheap import."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import agentstream
import agentstream.testing
from agentstream.emitter._core import EmitterCore

ROOT = Path(__file__).resolve().parents[2]


def test_all_is_derived_from_the_one_import_block() -> None:
    """``__all__`` is read from the ``TYPE_CHECKING`` block: sorted, no duplicates, and it
    holds every name the emitter package and the error tree's SDK branch export."""
    from agentstream import emitter

    assert agentstream.__all__ == sorted(set(agentstream.__all__))
    assert set(emitter.__all__) <= set(agentstream.__all__)
    for name in agentstream.__all__:
        value = getattr(agentstream, name)
        if isinstance(value, type):
            assert value.__name__ == name
            assert value.__module__.startswith("agentstream."), name
    assert set(agentstream.testing.__all__) == {
        "InMemoryEmitter",
        "RecordedMetrics",
        "SentMessage",
    }
    namespace: dict[str, object] = {}
    exec("from agentstream import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(agentstream.__all__)


def test_every_public_name_resolves() -> None:
    for name in agentstream.__all__:
        value = getattr(agentstream, name)
        assert value is not None, name
    assert set(agentstream.__all__) <= set(dir(agentstream))
    assert issubclass(agentstream.EventValidationError, agentstream.ContractError)
    assert issubclass(agentstream.ContractError, agentstream.AgentstreamError)
    # the test double runs the very pipeline of the Emitter
    assert issubclass(agentstream.testing.InMemoryEmitter, EmitterCore)
    assert issubclass(agentstream.Emitter, EmitterCore)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        agentstream.NoSuchThing  # noqa: B018


def test_the_emitter_and_helpers_have_the_documented_signatures() -> None:
    emitter = inspect.signature(agentstream.Emitter)
    assert list(emitter.parameters)[:2] == ["settings", "codec"]
    assert emitter.parameters["codec"].kind is inspect.Parameter.KEYWORD_ONLY
    core = agentstream.Emitter
    assert list(inspect.signature(core.tool_call).parameters) == [
        "self", "tool", "params", "timeout_ms", "attempt", "idempotent", "atomic",
        "retention", "run_id",
    ]  # fmt: skip
    assert list(inspect.signature(core.transition).parameters)[:2] == ["self", "to_state"]
    assert list(inspect.signature(core.model_call).parameters)[:7] == [
        "self", "model", "provider", "input_tokens", "output_tokens", "cost_usd", "latency_ms",
    ]  # fmt: skip
    assert list(inspect.signature(core.review).parameters)[:4] == [
        "self", "reviewer", "decision", "comment",
    ]  # fmt: skip
    for name in ("emit", "flush", "close", "stats", "traced"):
        assert callable(getattr(core, name)), name


def test_import_agentstream_imports_nothing_heavy() -> None:
    code = (
        "import json, sys, agentstream\n"
        "heavy = {'confluent_kafka', 'pydantic', 'opentelemetry', 'fastavro', 'ast'}\n"
        "ours = {m for m in sys.modules if m.startswith('agentstream.')}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & heavy | ours)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert json.loads(result.stdout) == []
