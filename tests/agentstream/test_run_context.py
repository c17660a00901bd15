"""Run context: ids set once per run, across threads and asyncio tasks; trace ids from OTel."""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, use_span

from agentstream import ContractError, RunContext, current_context, run_context
from agentstream.emitter._context import (
    DEFAULT_AGENT_VERSION,
    DEFAULT_USER_ID,
    active_trace,
    current_trace,
    traceparent,
)

TRACER = TracerProvider().get_tracer("test")


def test_a_run_binds_its_ids_and_unbinds_them() -> None:
    assert current_context() is None
    with run_context(tenant_id="acme", agent_id="planner", run_id="r-1") as ctx:
        assert current_context() is ctx
        assert ctx == RunContext("acme", "planner", "r-1", DEFAULT_USER_ID, DEFAULT_AGENT_VERSION)
    assert current_context() is None
    assert (DEFAULT_USER_ID, DEFAULT_AGENT_VERSION) == ("anonymous", "unknown")


def test_run_id_defaults_to_a_fresh_uuid() -> None:
    pattern = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    with run_context(tenant_id="t", agent_id="a") as first:
        pass
    with run_context(tenant_id="t", agent_id="a") as second:
        pass
    assert pattern.fullmatch(first.run_id)
    assert pattern.fullmatch(second.run_id)
    assert first.run_id != second.run_id


def test_nested_blocks_inherit_and_override() -> None:
    with run_context(tenant_id="acme", agent_id="planner", user_id="u1", agent_version="2.0"):
        with run_context(run_id="sub-run") as inner:
            assert inner == RunContext("acme", "planner", "sub-run", "u1", "2.0")
        assert current_context() is not None
        assert current_context() != inner


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"agent_id": "a"}, "tenant_id"),
        ({"tenant_id": "t"}, "agent_id"),
        ({"tenant_id": "", "agent_id": "a"}, "tenant_id"),
        ({"tenant_id": "t", "agent_id": "a", "user_id": ""}, "user_id"),
        ({"tenant_id": "t", "agent_id": "a", "run_id": "x" * 257}, "run_id"),
        ({"tenant_id": "t", "agent_id": 7}, "agent_id"),
    ],
)
def test_bad_or_missing_ids_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with (
        pytest.raises(ContractError, match=rf"^run_context: {field}: "),
        run_context(**kwargs),  # type: ignore[arg-type]
    ):
        pass
    assert current_context() is None


def test_threads_see_the_run_through_copy_context() -> None:
    seen: dict[str, RunContext | None] = {}

    def record(name: str) -> None:
        seen[name] = current_context()

    with run_context(tenant_id="t", agent_id="a", run_id="r-threads") as ctx:
        copied = threading.Thread(target=contextvars.copy_context().run, args=(record, "copied"))
        plain = threading.Thread(target=record, args=("plain",))
        copied.start()
        plain.start()
        copied.join()
        plain.join()
        with ThreadPoolExecutor(1) as pool:
            pool.submit(contextvars.copy_context().run, record, "pool").result()
    assert seen == {"copied": ctx, "plain": None, "pool": ctx}


def test_asyncio_tasks_keep_their_own_run() -> None:
    async def one_run(run_id: str) -> list[str | None]:
        seen = []
        with run_context(tenant_id="t", agent_id="a", run_id=run_id):
            for _ in range(3):
                await asyncio.sleep(0)
                child = await asyncio.create_task(_current_run_id())
                seen += [child, (current_context() or RunContext("", "", "")).run_id]
            seen.append(await asyncio.to_thread(_current_run_id_sync))
        return seen

    async def main() -> list[list[str | None]]:
        return list(await asyncio.gather(*(one_run(f"run-{i}") for i in range(5))))

    results = asyncio.run(main())
    assert results == [[f"run-{i}"] * 7 for i in range(5)]


async def _current_run_id() -> str | None:
    return _current_run_id_sync()


def _current_run_id_sync() -> str | None:
    ctx = current_context()
    return ctx.run_id if ctx is not None else None


def test_trace_ids_come_from_the_active_span() -> None:
    assert active_trace() is None
    assert current_trace() == (None, None)
    with TRACER.start_as_current_span("tool") as span:
        context = span.get_span_context()
        expected = (f"{context.trace_id:032x}", f"{context.span_id:016x}")
        assert active_trace() == (*expected, True)
        assert current_trace() == expected
    unsampled = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(0),
    )
    with use_span(NonRecordingSpan(unsampled)):
        assert active_trace() == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", False)


def test_traceparent_format() -> None:
    assert (
        traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    )
    assert traceparent("a" * 32, "b" * 16, sampled=False) == f"00-{'a' * 32}-{'b' * 16}-00"
    assert traceparent(None, "b" * 16) is None
