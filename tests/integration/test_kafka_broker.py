"""The project-run broker for real: clients round-trip, it is a JVM, the CLI drives it."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Message, Producer

from agentstream.cli import main
from agentstream.core.config import LocalKafkaSettings
from agentstream.core.errors import LocalStackError, PortInUseError
from agentstream.core.topics import ensure_topics
from agentstream.devtools.localstack import LocalKafka, free_ports
from agentstream.devtools.localstack._system import pid_alive
from agentstream.devtools.localstack.testing import BrokerHandle, TopicFactory

pytestmark = pytest.mark.integration

#: upper bound on polls while waiting for one message (each poll waits up to 1 s)
MAX_POLLS = 60


def _own_broker(kafka_broker: BrokerHandle) -> LocalKafka:
    if kafka_broker.local is None:
        pytest.skip("the session uses an external broker (AGENTSTREAM_TEST_KAFKA_BOOTSTRAP)")
    return kafka_broker.local


def _cmdline(pid: int) -> list[str]:
    proc = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        pytest.skip("needs procfs")
    return [part.decode() for part in proc.read_bytes().split(b"\0") if part]


def test_confluent_kafka_round_trip(kafka_broker: BrokerHandle, kafka_topic: TopicFactory) -> None:
    topic = kafka_topic("confluent")
    errors: list[object] = []
    producer = Producer(kafka_broker.client_config())
    producer.produce(
        topic, key=b"run-1", value=b"hello", on_delivery=lambda e, _m: errors.append(e)
    )
    assert producer.flush(30) == 0
    assert errors == [None]

    consumer = Consumer(
        kafka_broker.client_config(
            {"group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
        )
    )
    message: Message | None = None
    try:
        consumer.subscribe([topic])
        for _ in range(MAX_POLLS):
            message = consumer.poll(1.0)
            if message is not None:
                break
    finally:
        consumer.close()
    assert message is not None
    assert message.error() is None
    assert (message.key(), message.value()) == (b"run-1", b"hello")


async def _aiokafka_round_trip(bootstrap: str, topic: str) -> tuple[bytes, bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"run-2")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=MAX_POLLS)
    finally:
        await consumer.stop()
    return record.key, record.value


def test_aiokafka_round_trip(kafka_broker: BrokerHandle, kafka_topic: TopicFactory) -> None:
    topic = kafka_topic("aiokafka")
    assert asyncio.run(_aiokafka_round_trip(kafka_broker.bootstrap, topic)) == (
        b"run-2",
        b"hello",
    )


def test_broker_is_a_java_process_running_kafka(kafka_broker: BrokerHandle) -> None:
    local = _own_broker(kafka_broker)
    pid = local.pid()
    assert pid is not None
    argv = _cmdline(pid)
    assert Path(argv[0]).name == "java"
    assert "kafka.Kafka" in argv
    assert str(local.server_properties) in argv
    assert local.status().running


def test_start_when_running_is_harmless(kafka_broker: BrokerHandle) -> None:
    local = _own_broker(kafka_broker)
    pid = local.pid()
    result = local.start()
    assert not result.started
    assert result.pid == pid
    assert local.status().running


def test_ensure_topics_is_idempotent(kafka_broker: BrokerHandle, kafka_topic: TopicFactory) -> None:
    names = [kafka_topic("idem-a", create=False), kafka_topic("idem-b", create=False)]
    assert ensure_topics(kafka_broker.bootstrap, names, partitions=3) == names
    assert ensure_topics(kafka_broker.bootstrap, [*names, names[0]], partitions=3) == []
    producer = Producer(kafka_broker.client_config())
    metadata = producer.list_topics(timeout=10)
    assert {name: len(metadata.topics[name].partitions) for name in names} == {
        names[0]: 3,
        names[1]: 3,
    }


def test_ensure_topics_reports_a_refused_topic(
    kafka_broker: BrokerHandle, kafka_topic: TopicFactory
) -> None:
    name = kafka_topic("too-many-replicas", create=False)
    with pytest.raises(LocalStackError, match=f"cannot create topic '{name}'") as info:
        ensure_topics(kafka_broker.bootstrap, [name], replication=3)
    assert "\n" not in str(info.value)


# -- separate brokers in temporary homes ---------------------------------------------------


@pytest.fixture
def scratch_settings(
    tmp_path: Path, local_kafka_settings: LocalKafkaSettings
) -> Iterator[LocalKafkaSettings]:
    """Settings for a second broker on free ports in ``tmp_path``; stopped afterwards."""
    port, controller_port = free_ports(local_kafka_settings.host, 2)
    settings = local_kafka_settings.model_copy(
        update={"home": tmp_path / "home", "port": port, "controller_port": controller_port}
    )
    yield settings
    LocalKafka(settings).stop()


@pytest.mark.parametrize("which", ["port", "controller_port"])
def test_taken_port_is_a_one_line_port_in_use_error(
    scratch_settings: LocalKafkaSettings, which: str
) -> None:
    with socket.socket() as holder:
        holder.bind((scratch_settings.host, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        local = LocalKafka(scratch_settings.model_copy(update={which: taken}))
        with pytest.raises(PortInUseError) as info:
            local.start()
    assert info.value.port == taken
    assert f"port {taken}" in str(info.value)
    assert "\n" not in str(info.value)
    assert local.pid() is None


def _cli_args(settings: LocalKafkaSettings) -> list[str]:
    return [
        "--home",
        str(settings.home),
        "--port",
        str(settings.port),
        "--controller-port",
        str(settings.controller_port),
        "--cache-dir",
        str(settings.cache_dir),
    ]


def test_cli_up_status_down_twice(
    scratch_settings: LocalKafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _cli_args(scratch_settings)
    bootstrap = f"{scratch_settings.host}:{scratch_settings.port}"
    pids = []
    for _ in range(2):
        assert main(["kafka", "up", *args]) == 0
        assert f"up at {bootstrap}" in capsys.readouterr().out
        assert main(["kafka", "up", *args]) == 0
        assert f"already running at {bootstrap}" in capsys.readouterr().out
        assert main(["kafka", "status", *args]) == 0
        assert f"running at {bootstrap}" in capsys.readouterr().out
        (other_port,) = free_ports(scratch_settings.host, 1)
        moved = [*args, "--port", str(other_port)]  # the last --port wins
        assert main(["kafka", "up", *moved]) == 1
        assert "already runs in" in capsys.readouterr().err
        pid = LocalKafka(scratch_settings).pid()
        assert pid is not None
        assert "kafka.Kafka" in _cmdline(pid)
        pids.append(pid)

        assert main(["kafka", "down", *args]) == 0
        assert f"stopped (pid {pid})" in capsys.readouterr().out
        assert not pid_alive(pid)
        assert main(["kafka", "down", *args]) == 0
        assert "not running" in capsys.readouterr().out
        assert main(["kafka", "status", *args]) == 3
        assert "not running" in capsys.readouterr().out
    assert pids[0] != pids[1]
    assert (scratch_settings.home / "data" / "meta.properties").is_file()


def test_cli_reports_a_taken_port_in_one_line(
    scratch_settings: LocalKafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as holder:
        holder.bind((scratch_settings.host, scratch_settings.port))
        holder.listen()
        assert main(["kafka", "up", *_cli_args(scratch_settings)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"agentstream: error: port {scratch_settings.port} on {scratch_settings.host} "
        "is already in use by another process"
    ]


async def _aiokafka_partitions(bootstrap: str, topic: str, keys: list[bytes]) -> dict[bytes, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return {key: (await producer.send_and_wait(topic, b"x", key=key)).partition for key in keys}
    finally:
        await producer.stop()


def test_the_emitter_and_aiokafka_put_a_run_on_the_same_partition(
    kafka_broker: BrokerHandle, kafka_topic: TopicFactory
) -> None:
    from agentstream.core.config import load_settings
    from agentstream.emitter._emitter import kafka_producer_config

    topic = kafka_topic("partitioning", partitions=6)
    keys = [f"run-{uuid.uuid4()}".encode() for _ in range(60)]
    config = kafka_producer_config(
        load_settings(kafka={"bootstrap_servers": kafka_broker.bootstrap})
    )
    placed: dict[bytes | None, int | None] = {}

    def delivered(_error: object, message: Message) -> None:
        placed[message.key()] = message.partition()

    producer = Producer(config)
    for key in keys:
        producer.produce(topic, b"x", key, on_delivery=delivered)
    assert producer.flush(30) == 0

    theirs = asyncio.run(_aiokafka_partitions(kafka_broker.bootstrap, topic, keys))

    assert placed == theirs
    assert len(set(placed.values())) == 6  # the keys spread over every partition
