"""The local broker's pure parts: rendered configs, jar cache, ports, process identity."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from agentstream.cli import main
from agentstream.core.config import LocalKafkaSettings
from agentstream.core.errors import ConfigError, LocalStackError, PortInUseError, ToolMissingError
from agentstream.core.topics import ensure_topics
from agentstream.devtools.localstack import (
    JarCache,
    LocalKafka,
    check_ports_free,
    free_ports,
    port_in_use,
    render_log4j2,
    render_pom,
    render_server_properties,
)
from agentstream.devtools.localstack._jars import MARKER_NAME
from agentstream.devtools.localstack._system import format_bootstrap, parse_java_major
from agentstream.devtools.localstack.testing import unique_topic_name

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _properties(text: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in text.splitlines() if line and line[0] != "#")
    return {key: value for key, _, value in pairs}


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# -- server.properties / log4j2.yaml -------------------------------------------------------


def test_server_properties_are_a_single_node_kraft_cluster(tmp_path: Path) -> None:
    settings = LocalKafkaSettings(host="127.0.0.1", port=19500, controller_port=19501)
    props = _properties(render_server_properties(settings, tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19501"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19500,CONTROLLER://127.0.0.1:19501"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19500"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "1"
    assert props["auto.create.topics.enable"] == "false"  # topics come from `topics create`
    assert not [value for value in props.values() if "$" in value]


def test_server_properties_bracket_ipv6_hosts(tmp_path: Path) -> None:
    settings = LocalKafkaSettings(host="::1", port=19500, controller_port=19501)
    props = _properties(render_server_properties(settings, tmp_path))
    assert props["listeners"] == "PLAINTEXT://[::1]:19500,CONTROLLER://[::1]:19501"
    assert props["controller.quorum.voters"] == "1@[::1]:19501"


def test_server_properties_escape_paths_for_java(tmp_path: Path) -> None:
    props = _properties(render_server_properties(LocalKafkaSettings(), Path("/tmp/caf\u00e9\\x")))
    assert props["log.dirs"] == "/tmp/caf\\u00e9\\\\x"


def test_same_client_and_controller_port_is_a_config_error(tmp_path: Path) -> None:
    settings = LocalKafkaSettings(port=19500, controller_port=19500)
    with pytest.raises(ConfigError, match="AGENTSTREAM_LOCAL_KAFKA__CONTROLLER_PORT"):
        render_server_properties(settings, tmp_path)


def test_log4j2_config_is_yaml_logging_to_the_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "server.log"
    config = yaml.safe_load(render_log4j2(log_file))["Configuration"]
    rolling = config["Appenders"]["RollingFile"]
    assert rolling["fileName"] == str(log_file)
    assert rolling["filePattern"] == f"{log_file}.%i"
    assert config["Loggers"]["Root"]["AppenderRef"] == [{"ref": rolling["name"]}]
    names = {logger["name"] for logger in config["Loggers"]["Logger"]}
    assert "kafka.network.RequestChannel$" in names


# -- pom.xml and the jar cache -------------------------------------------------------------


def test_pom_asks_for_the_configured_kafka_version() -> None:
    root = ET.fromstring(render_pom("4.0.0", "2.13"))
    props = root.find("m:properties", POM_NS)
    assert props is not None
    assert props.findtext("m:kafka.version", namespaces=POM_NS) == "4.0.0"
    assert props.findtext("m:scala.binary.version", namespaces=POM_NS) == "2.13"
    artifacts = [
        dep.findtext("m:artifactId", namespaces=POM_NS)
        for dep in root.iter("{http://maven.apache.org/POM/4.0.0}dependency")
    ]
    assert artifacts == ["kafka_${scala.binary.version}", "log4j-slf4j2-impl", "slf4j-api"]


def test_a_version_that_is_not_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="AGENTSTREAM_LOCAL_KAFKA__VERSION"):
        render_pom("4.1.1</version>", "2.13")


def _complete_cache(root: Path, jars: list[str]) -> JarCache:
    cache = JarCache(root, "4.1.1", "2.13")
    cache.libs.mkdir(parents=True)
    for jar in jars:
        (cache.libs / jar).write_bytes(b"PK")
    record = {"version": "4.1.1", "scala_version": "2.13", "jars": jars}
    cache.marker.write_text(json.dumps(record))
    return cache


def test_cache_with_marker_and_every_jar_is_complete(tmp_path: Path) -> None:
    cache = _complete_cache(tmp_path, ["kafka_2.13-4.1.1.jar", "kafka-clients-4.1.1.jar"])
    assert cache.is_complete()
    assert cache.marker.name == MARKER_NAME
    assert cache.libs == tmp_path / "4.1.1" / "libs"


def test_cache_without_marker_is_incomplete(tmp_path: Path) -> None:
    cache = _complete_cache(tmp_path, ["kafka_2.13-4.1.1.jar"])
    cache.marker.unlink()
    assert not cache.is_complete()


def test_cache_missing_a_listed_jar_is_incomplete(tmp_path: Path) -> None:
    cache = _complete_cache(tmp_path, ["kafka_2.13-4.1.1.jar", "kafka-clients-4.1.1.jar"])
    (cache.libs / "kafka-clients-4.1.1.jar").unlink()
    assert not cache.is_complete()


@pytest.mark.parametrize(
    "record",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({"version": "4.0.0", "scala_version": "2.13", "jars": []}),
        json.dumps({"version": "4.1.1", "scala_version": "2.12", "jars": []}),
        json.dumps({"version": "4.1.1", "scala_version": "2.13", "jars": ["other.jar"]}),
    ],
)
def test_cache_with_a_foreign_marker_is_incomplete(tmp_path: Path, record: str) -> None:
    cache = _complete_cache(tmp_path, ["kafka_2.13-4.1.1.jar", "other.jar"])
    cache.marker.write_text(record)
    assert not cache.is_complete()


def test_complete_cache_does_not_run_mvn(tmp_path: Path) -> None:
    cache = _complete_cache(tmp_path, ["kafka_2.13-4.1.1.jar"])
    assert cache.ensure(mvn=str(tmp_path / "no-such-mvn")) == cache.libs


def test_missing_mvn_names_the_setting(tmp_path: Path) -> None:
    cache = JarCache(tmp_path, "4.1.1")
    with pytest.raises(ToolMissingError, match="AGENTSTREAM_LOCAL_KAFKA__MVN"):
        cache.ensure(mvn=str(tmp_path / "no-such-mvn"))


FAKE_MVN = r"""
echo "$@" > "$(dirname "$0")/args"
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac
done
echo "[INFO] Downloaded from central: https://repo/kafka_2.13-4.1.1.jar"
mkdir -p "$out" && touch "$out/kafka_2.13-4.1.1.jar" "$out/kafka-clients-4.1.1.jar"
"""


def test_resolution_fills_the_cache_once_and_reports_progress(tmp_path: Path) -> None:
    mvn = _script(tmp_path / "mvn", FAKE_MVN)
    cache = JarCache(tmp_path / "cache", "4.1.1")
    steps: list[tuple[str, str]] = []
    libs = cache.ensure(mvn=str(mvn), progress=lambda step, detail: steps.append((step, detail)))
    assert sorted(path.name for path in libs.iterdir()) == [
        "kafka-clients-4.1.1.jar",
        "kafka_2.13-4.1.1.jar",
    ]
    assert cache.is_complete()
    assert any("1 files downloaded" in detail for _, detail in steps)
    args = (tmp_path / "args").read_text()
    assert "dependency:copy-dependencies" in args
    assert "-DincludeScope=runtime" in args
    assert "maven.repo.local" not in args
    mvn.unlink()  # a second run must not need mvn at all
    assert cache.ensure(mvn=str(mvn)) == libs


def test_maven_repo_local_is_passed_only_when_set(tmp_path: Path) -> None:
    mvn = _script(tmp_path / "mvn", FAKE_MVN)
    JarCache(tmp_path / "cache", "4.1.1").ensure(str(mvn), maven_repo_local=tmp_path / "repo")
    assert f"-Dmaven.repo.local={tmp_path / 'repo'}" in (tmp_path / "args").read_text()


def test_failed_resolution_is_one_line_and_leaves_no_cache(tmp_path: Path) -> None:
    mvn = _script(tmp_path / "mvn", 'echo "[ERROR] Could not find artifact kafka"; exit 1\n')
    cache = JarCache(tmp_path / "cache", "4.1.1")
    with pytest.raises(LocalStackError, match="Could not find artifact kafka") as info:
        cache.ensure(mvn=str(mvn))
    assert "\n" not in str(info.value)
    assert not cache.is_complete()
    assert not cache.libs.exists()


# -- ports, tools, processes ---------------------------------------------------------------


def test_a_listening_port_is_in_use_and_a_free_one_is_not() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        free = next(port for port in free_ports("127.0.0.1", 2) if port != taken)
        assert port_in_use("127.0.0.1", taken)
        assert not port_in_use("127.0.0.1", free)
        with pytest.raises(PortInUseError) as info:
            check_ports_free("127.0.0.1", [free, taken])
    assert info.value.port == taken
    assert str(taken) in str(info.value)
    assert "\n" not in str(info.value)


def test_ensure_topics_without_a_broker_is_one_clear_error() -> None:
    (port,) = free_ports("127.0.0.1", 1)
    with pytest.raises(LocalStackError, match=f"cannot reach Kafka at 127.0.0.1:{port}"):
        ensure_topics(f"127.0.0.1:{port}", ["t"], timeout_s=1)


def test_free_ports_are_distinct() -> None:
    ports = free_ports("127.0.0.1", 3)
    assert len(set(ports)) == 3


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_292"', 8),
        ("command not understood", None),
    ],
)
def test_java_major_version_is_parsed(output: str, major: int | None) -> None:
    assert parse_java_major(output) == major


def test_bootstrap_brackets_ipv6_hosts() -> None:
    assert format_bootstrap("127.0.0.1", 9092) == "127.0.0.1:9092"
    assert format_bootstrap("::1", 9092) == "[::1]:9092"


def _local(tmp_path: Path, **fields: object) -> LocalKafka:
    settings = LocalKafkaSettings.model_validate({"home": tmp_path / "home", **fields})
    return LocalKafka(settings)


def test_missing_java_names_the_setting(tmp_path: Path) -> None:
    local = _local(tmp_path, java=str(tmp_path / "no-such-java"))
    with pytest.raises(ToolMissingError, match="AGENTSTREAM_LOCAL_KAFKA__JAVA") as info:
        local.start()
    assert "\n" not in str(info.value)


def test_java_8_is_refused_for_kafka_4(tmp_path: Path) -> None:
    java = _script(tmp_path / "java", "echo 'java version \"1.8.0_292\"' >&2\n")
    with pytest.raises(ToolMissingError, match="Java 8"):
        _local(tmp_path, java=str(java)).start()


def test_bad_heap_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AGENTSTREAM_LOCAL_KAFKA__HEAP"):
        _local(tmp_path, heap="lots")


def test_nothing_runs_in_a_fresh_home(tmp_path: Path) -> None:
    local = _local(tmp_path)
    status = local.status()
    assert not status.running
    assert status.pid is None
    assert local.stop() is None


def test_a_pid_file_naming_another_program_is_stale(tmp_path: Path) -> None:
    local = _local(tmp_path)
    local.home.mkdir(parents=True)
    local.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not kafka.Kafka
    assert local.pid() is None
    assert local.stop() is None
    assert not local.pid_file.exists()


def test_jar_cache_defaults_to_home_and_can_be_shared(tmp_path: Path) -> None:
    assert _local(tmp_path).jars.libs == tmp_path / "home" / "4.1.1" / "libs"
    shared = _local(tmp_path, cache_dir=tmp_path / "shared")
    assert shared.jars.libs == tmp_path / "shared" / "4.1.1" / "libs"
    assert shared.data_dir == tmp_path / "home" / "data"


# -- topic names and the CLI ---------------------------------------------------------------


def test_unique_topic_names_are_legal_and_differ() -> None:
    first = unique_topic_name("test", "test_x[param-1/2]")
    second = unique_topic_name("test", "test_x[param-1/2]")
    assert first != second
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,249}", first)
    assert len(unique_topic_name("p" * 400)) <= 249


def test_cli_status_without_broker_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port, controller_port = free_ports("127.0.0.1", 2)
    argv = ["--home", str(tmp_path), "--port", str(port), "--controller-port", str(controller_port)]
    assert main(["kafka", "status", *argv]) == 3
    assert f":{port}" in capsys.readouterr().out
    assert main(["kafka", "down", *argv]) == 0
    assert "not running" in capsys.readouterr().out


def test_cli_rejects_a_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["kafka", "up", "--port", "70000"])
    assert info.value.code == 2
    assert "not a TCP port" in capsys.readouterr().err
