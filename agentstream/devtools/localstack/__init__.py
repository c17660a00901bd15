"""The local stack: a project-run Apache Kafka broker (KRaft) and its helpers."""

from agentstream.devtools.localstack._jars import JarCache, render_pom
from agentstream.devtools.localstack._render import render_log4j2, render_server_properties
from agentstream.devtools.localstack._system import check_ports_free, free_ports, port_in_use
from agentstream.devtools.localstack.kafka import (
    BrokerStatus,
    LocalKafka,
    StartResult,
    broker_answers,
)

__all__ = [
    "BrokerStatus",
    "JarCache",
    "LocalKafka",
    "StartResult",
    "broker_answers",
    "check_ports_free",
    "free_ports",
    "port_in_use",
    "render_log4j2",
    "render_pom",
    "render_server_properties",
]
