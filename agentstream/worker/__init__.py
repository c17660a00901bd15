"""The worker process: processors, ClickHouse sink and alert delivery, supervised, behind
one web port (``/health``, ``/ready``, ``/metrics``, analyst access)."""

from agentstream.worker._components import ensure_changelog
from agentstream.worker._supervisor import Component, ComponentHealth
from agentstream.worker._web import HttpRequest
from agentstream.worker._worker import Worker, run_worker

__all__ = [
    "Component",
    "ComponentHealth",
    "HttpRequest",
    "Worker",
    "ensure_changelog",
    "run_worker",
]
