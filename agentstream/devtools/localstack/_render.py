"""The broker's configuration files, rendered from the packaged templates."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from string import Template

from agentstream.core.config import LocalKafkaSettings
from agentstream.core.errors import ConfigError
from agentstream.devtools.localstack._system import format_bootstrap

__all__ = ["NODE_ID", "render_log4j2", "render_server_properties"]

#: the node id of the single combined broker + controller
NODE_ID = 1


def _property_value(value: str) -> str:
    """Escape ``value`` for a Java properties file (read as ISO-8859-1)."""
    out = []
    for char in value.replace("\\", "\\\\"):
        code = ord(char)
        if code < 0x7F:
            out.append(char)
        else:
            encoded = char.encode("utf-16-be")
            out.extend(
                f"\\u{int.from_bytes(encoded[i : i + 2], 'big'):04x}"
                for i in range(0, len(encoded), 2)
            )
    return "".join(out)


def _template(name: str) -> Template:
    return Template(resources.files("agentstream.devtools.localstack").joinpath(name).read_text())


def render_server_properties(settings: LocalKafkaSettings, data_dir: Path) -> str:
    """The broker's ``server.properties`` for ``settings``, storing data in ``data_dir``."""
    if settings.port == settings.controller_port:
        raise ConfigError(
            "AGENTSTREAM_LOCAL_KAFKA__CONTROLLER_PORT: must differ from "
            f"AGENTSTREAM_LOCAL_KAFKA__PORT ({settings.port})"
        )
    if "," in str(data_dir):
        raise ConfigError(f"AGENTSTREAM_LOCAL_KAFKA__HOME: no commas allowed: {data_dir}")
    return _template("server.properties").substitute(
        node_id=NODE_ID,
        listener=format_bootstrap(settings.host, settings.port),
        controller=format_bootstrap(settings.host, settings.controller_port),
        log_dirs=_property_value(str(data_dir)),
    )


def render_log4j2(log_file: Path) -> str:
    """The broker's log4j2 YAML configuration, logging to the rolling ``log_file``."""
    return _template("log4j2.yaml").substitute(
        log_file=json.dumps(str(log_file)),
        log_file_pattern=json.dumps(f"{log_file}.%i"),
    )
