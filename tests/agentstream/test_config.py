"""Settings: sources, precedence and error messages that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from agentstream.core.config import Settings, TopicSettings, load_settings
from agentstream.core.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AGENTSTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_embedded_defaults() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.clickhouse.backend == "embedded"
    assert settings.retention.business_days == 90
    assert settings.retention.legal_days == 2557  # 7 years of 365.25 days
    assert settings.lifecycle.init_budget_s == 30
    assert settings.lifecycle.preparing_budget_s == 60
    assert settings.lifecycle.reviewing_budget_s == 300


def test_env_overrides_nested_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", "broker-1:9094")
    monkeypatch.setenv("AGENTSTREAM_SINK__BATCH_SIZE", "123")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "broker-1:9094"
    assert settings.sink.batch_size == 123


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTREAM_LOCAL_KAFKA__PORT", "not-a-port")
    with pytest.raises(ConfigError, match=r"AGENTSTREAM_LOCAL_KAFKA__PORT: .*integer"):
        load_settings()


def test_out_of_range_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTREAM_RETENTION__BUSINESS_DAYS", "0")
    with pytest.raises(ConfigError, match=r"AGENTSTREAM_RETENTION__BUSINESS_DAYS: .*greater"):
        load_settings()


def test_unknown_key_in_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "conf.toml"
    config.write_text("[kafka]\nbootstrap_server = 'typo:9092'\n")
    monkeypatch.setenv("AGENTSTREAM_CONFIG", str(config))
    with pytest.raises(ConfigError, match="AGENTSTREAM_KAFKA__BOOTSTRAP_SERVER"):
        load_settings()


def test_toml_file_then_env_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "agentstream.toml").write_text(
        "[kafka]\nbootstrap_servers = 'from-file:9092'\nclient_id = 'file-client'\n"
        "[retention]\nlegal_days = 3000\n"
    )
    monkeypatch.setenv("AGENTSTREAM_KAFKA__CLIENT_ID", "env-client")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "from-file:9092"
    assert settings.kafka.client_id == "env-client"
    assert settings.retention.legal_days == 3000


def test_missing_explicit_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTSTREAM_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="AGENTSTREAM_CONFIG: no such file"):
        load_settings()


def test_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTREAM_TOPICS__PREFIX", "env.")
    settings = load_settings(topics={"prefix": "kw."})
    assert settings.topics.name("tool_calls") == "kw.tool_calls"


def test_secrets_are_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTREAM_KAFKA__SASL_PASSWORD", "hunter2")
    settings = load_settings()
    assert isinstance(settings.kafka.sasl_password, SecretStr)
    assert "hunter2" not in repr(settings)
    assert settings.kafka.confluent_config()["sasl.password"] == "hunter2"


def test_every_secret_field_is_secretstr() -> None:
    secretish = ("password", "secret", "token")
    for section_name, section in Settings.model_fields.items():
        annotation = section.annotation
        assert annotation is not None
        for field_name, field in annotation.model_fields.items():
            if any(word in field_name for word in secretish):
                assert "SecretStr" in str(field.annotation), f"{section_name}.{field_name}"


def test_topic_names() -> None:
    topics = TopicSettings(prefix="prod.")
    assert topics.all() == {
        "tool_calls": "prod.tool_calls",
        "model_calls": "prod.model_calls",
        "transitions": "prod.transitions",
        "reviews": "prod.reviews",
        "lifecycle": "prod.lifecycle",
        "invalid": "prod.invalid",
        "rollups": "prod.rollups",
        "alerts": "prod.alerts",
        "eval_results": "prod.eval_results",
        "feedback": "prod.feedback",
    }
    with pytest.raises(ConfigError, match="unknown stream"):
        topics.name("nope")
