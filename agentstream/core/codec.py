"""The one codec factory: every producer and consumer of the topics builds its codec here.

With ``emitter.registry_url`` unset, everyone uses the single-object framing (no
registry). With it set:

* the Emitter (``role="producer"``) writes the Confluent framing; its schemas are
  registered here, not on the first ``emit`` (which must not block), and an
  unreachable registry falls back to the single-object framing with a warning
  (consumers read both);
* every consumer (``role="consumer"``: processors, sink, alert dispatcher and
  history, CLI tools) decodes both framings, looking Confluent schema ids up in
  the same registry; what a consumer writes itself (processor outputs, dead
  letters) stays in the single-object framing, which needs no registry to read.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

from agentstream.core.config import Settings
from agentstream.core.errors import ConfigError, SchemaRegistryError
from agentstream.schemas import AvroCodec, HttpSchemaRegistry

__all__ = ["CodecRole", "codec_from_settings", "registry_from_settings"]

_log: Final = logging.getLogger("agentstream.codec")

CodecRole = Literal["producer", "consumer"]


def registry_from_settings(settings: Settings) -> HttpSchemaRegistry | None:
    """The schema registry client of ``emitter.registry_*`` (``None`` without a url)."""
    es = settings.emitter
    if es.registry_url is None:
        return None
    password = es.registry_password.get_secret_value() if es.registry_password else None
    return HttpSchemaRegistry(es.registry_url, username=es.registry_username, password=password)


def codec_from_settings(settings: Settings, *, role: CodecRole = "producer") -> AvroCodec:
    """The codec of ``settings`` for a ``producer`` (the Emitter) or a ``consumer``."""
    es = settings.emitter
    registry = registry_from_settings(settings)
    if registry is None:
        if es.framing == "confluent" and role == "producer":
            raise ConfigError(
                "AGENTSTREAM_EMITTER__REGISTRY_URL: the confluent framing needs a registry url"
            )
        return AvroCodec()
    if role == "consumer":
        return AvroCodec(registry=registry)
    codec = AvroCodec("confluent", registry)
    try:
        codec.register_all()
    except SchemaRegistryError as exc:
        _log.warning("agentstream: %s; emitting with the single-object framing instead", exc)
        return AvroCodec()
    return codec
