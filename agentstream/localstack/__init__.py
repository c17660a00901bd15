"""The local stack: a project-run Apache Kafka broker (KRaft) and its helpers."""

from agentstream.localstack._jars import JarCache, render_pom
from agentstream.localstack._render import render_log4j2, render_server_properties
from agentstream.localstack._system import check_ports_free, free_ports, port_in_use
from agentstream.localstack.kafka import (
    BrokerStatus,
    LocalKafka,
    StartResult,
    broker_answers,
)
from agentstream.localstack.topics import ensure_topics

__all__ = [
    "BrokerStatus",
    "JarCache",
    "LocalKafka",
    "StartResult",
    "broker_answers",
    "check_ports_free",
    "ensure_topics",
    "free_ports",
    "port_in_use",
    "render_log4j2",
    "render_pom",
    "render_server_properties",
]
