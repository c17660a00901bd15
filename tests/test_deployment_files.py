"""docker-compose.yml stays valid and speaks the settings' language."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentstream.core.config import ENV_DELIMITER, ENV_PREFIX, Settings, WorkerSettings

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_the_production_services() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert {"kafka", "clickhouse", "otel-collector", "jaeger", "worker"} <= set(services)


def test_worker_environment_names_real_settings() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    env: dict[str, str] = services["worker"]["environment"]
    assert env, "the worker must be configured through the environment"
    for name in env:
        assert name.startswith(ENV_PREFIX), name
        section, _, field = name.removeprefix(ENV_PREFIX).lower().partition(ENV_DELIMITER)
        assert section in Settings.model_fields, name
        annotation = Settings.model_fields[section].annotation
        assert annotation is not None
        assert field in annotation.model_fields, name


def test_compose_mounts_files_that_exist() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), source


def _worker() -> dict[str, Any]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    worker: dict[str, Any] = services["worker"]
    return worker


def test_the_worker_scales_out_without_host_port_clashes() -> None:
    """``docker compose up --scale worker=3``: no replica may claim a fixed host port."""
    worker = _worker()
    for port in worker.get("ports", []):
        spec = str(port).rsplit(":", 1)
        # "6066" (container only) or a host range "6066-6075:6066" is fine; "6066:6066" is not
        assert len(spec) == 1 or "-" in spec[0].split(":")[-1], port
    web_port = Settings().worker.web_port
    exposed = {str(p) for p in worker.get("expose", [])}
    env = worker["environment"]
    assert str(env.get("AGENTSTREAM_WORKER__WEB_PORT", web_port)) in exposed
    assert "container_name" not in worker  # a fixed name cannot be scaled


def test_every_replica_has_its_own_instance_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """The id is each container's host name: compose must neither fix nor interpolate it."""
    worker = _worker()
    assert "hostname" not in worker  # one host name for every replica
    assert "AGENTSTREAM_WORKER__INSTANCE_ID" not in worker["environment"]
    for name in ("a1b2c3d4e5f6", "worker_2"):
        monkeypatch.setattr(socket, "gethostname", lambda name=name: name)
        settings = WorkerSettings()
        assert settings.instance_id == name
    monkeypatch.setattr(socket, "gethostname", lambda: "ab:cd")
    assert WorkerSettings().instance_id == "ab-cd"  # made safe for Kafka ids


def test_analysts_reach_the_web_port_through_one_published_gateway() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    gateway = services["analyst-gateway"]
    published = [str(p) for p in gateway["ports"]]
    assert any(p.endswith(":6066") for p in published), published
    conf = next(v.split(":")[0] for v in gateway["volumes"] if v.startswith("./"))
    text = (ROOT / conf).read_text()
    port = _worker()["environment"]["AGENTSTREAM_WORKER__WEB_PORT"]
    # the upstream is the worker *service*, resolved per request: every replica is reached
    assert re.search(r"set \$workers worker;", text)
    assert f"proxy_pass http://$workers:{port};" in text
    assert "resolver 127.0.0.11" in text


def test_replicas_share_the_analyst_keys() -> None:
    worker = _worker()
    keys_dir = Path("/app") / Settings().analyst.keys_file.parent
    mounts = {v.split(":")[1]: v.split(":")[0] for v in worker.get("volumes", [])}
    assert str(keys_dir) in mounts
    named = _compose()["volumes"]
    assert isinstance(named, dict)
    assert mounts[str(keys_dir)] in named
