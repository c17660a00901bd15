"""docker-compose.yml stays valid and speaks the settings' language."""

from __future__ import annotations

from pathlib import Path

import yaml

from agentstream.core.config import ENV_DELIMITER, ENV_PREFIX, Settings

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
