"""Alert channels: generic webhook, Slack-compatible webhook, log, stdout.

A :class:`Channel` makes one delivery attempt per :meth:`Channel.send` call and
raises :class:`~agentstream.core.errors.ChannelError` when it fails (``retryable``
tells the :class:`~sinks.alerting.Notifier` whether to try again). Channels are
synchronous on purpose: each runs on its own delivery thread, never on the
caller's.
"""

from __future__ import annotations

import email.utils
import json
import logging
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol, TextIO, runtime_checkable

import httpx
from pydantic import SecretStr

from agentstream.core.config import AlertChannelSettings, AlertSettings
from agentstream.core.errors import ChannelError, ConfigError
from agentstream.schemas import Alert, AlertState, Severity
from agentstream.sinks.alerting._payloads import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    slack_payload,
    webhook_body,
    webhook_payload,
)

__all__ = [
    "Channel",
    "LogChannel",
    "SlackChannel",
    "StdoutChannel",
    "WebhookChannel",
    "build_channels",
]

log = logging.getLogger("agentstream.sinks.alerting")

#: statuses worth another attempt besides 5xx
_RETRYABLE_STATUS = frozenset({408, 425, 429})
_USER_AGENT = "agentstream-alerts/1"
_LOG_LEVELS = {
    Severity.CRITICAL: logging.ERROR,
    Severity.WARNING: logging.WARNING,
    Severity.INFO: logging.INFO,
}


@runtime_checkable
class Channel(Protocol):
    """Somewhere alerts go; ``send`` makes one attempt and raises ``ChannelError``."""

    name: str

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` once; raise :class:`ChannelError` on failure."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _HttpChannel:
    """POST a body; 2xx is success, 5xx/408/425/429/network errors are retryable."""

    def __init__(self, name: str, url: str, timeout_s: float) -> None:
        self.name = name
        self._url = url
        self._client = httpx.Client(
            timeout=timeout_s, follow_redirects=False, headers={"User-Agent": _USER_AGENT}
        )

    def _post(self, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            response = self._client.post(self._url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise ChannelError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        detail = response.text[:200].strip()
        raise ChannelError(
            f"{self.name}: HTTP {status}" + (f": {detail}" if detail else ""),
            retryable=retryable,
            retry_after=_retry_after(response) if retryable else None,
        )

    def close(self) -> None:
        self._client.close()


class WebhookChannel(_HttpChannel):
    """POST the alert as JSON, signed with HMAC-SHA256 (see :mod:`sinks.alerting._payloads`)."""

    def __init__(
        self, name: str, url: str, *, secret: bytes | None = None, timeout_s: float = 10.0
    ) -> None:
        super().__init__(name, url, timeout_s)
        self._secret = secret

    def send(self, alert: Alert) -> None:
        body = webhook_body(alert)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            ALERT_ID_HEADER: alert.alert_id,
            TIMESTAMP_HEADER: timestamp,
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        self._post(body, headers)


class SlackChannel(_HttpChannel):
    """POST a Slack-compatible incoming-webhook message."""

    def __init__(self, name: str, url: str, *, timeout_s: float = 10.0) -> None:
        super().__init__(name, url, timeout_s)

    def send(self, alert: Alert) -> None:
        body = json.dumps(slack_payload(alert)).encode()
        self._post(body, {"Content-Type": "application/json"})


class LogChannel:
    """Log the alert: FIRING at the severity's level, RESOLVED at INFO."""

    def __init__(self, name: str = "log", logger: logging.Logger | None = None) -> None:
        self.name = name
        self._log = logger or logging.getLogger("agentstream.alerts")

    def send(self, alert: Alert) -> None:
        level = _LOG_LEVELS[alert.severity] if alert.state == AlertState.FIRING else logging.INFO
        self._log.log(
            level,
            "[%s] %s %s on %s: %s",
            alert.state,
            alert.severity,
            alert.rule_id,
            alert.scope_key,
            alert.message,
            extra={"alert": webhook_payload(alert)},
        )

    def close(self) -> None:
        return None


class StdoutChannel:
    """Write each alert as one JSON line (the webhook body) to a stream."""

    def __init__(self, name: str = "stdout", stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream

    def send(self, alert: Alert) -> None:
        stream = self._stream or sys.stdout
        try:
            stream.write(webhook_body(alert).decode() + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:
            raise ChannelError(f"{self.name}: {exc}", retryable=False) from exc

    def close(self) -> None:
        return None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _named(name: str, spec: AlertChannelSettings, settings: AlertSettings) -> Channel:
    setting = f"AGENTSTREAM_ALERTS__CHANNELS: {name}"
    url = _secret(spec.url)
    if spec.kind in ("webhook", "slack") and not url:
        raise ConfigError(f"{setting}: a {spec.kind} channel needs a url")
    if spec.kind == "webhook" and url:
        key = _secret(spec.secret) or _secret(settings.webhook_secret)
        return WebhookChannel(
            name,
            url,
            secret=key.encode() if key else None,
            timeout_s=settings.delivery_timeout_s,
        )
    if spec.kind == "slack" and url:
        return SlackChannel(name, url, timeout_s=settings.delivery_timeout_s)
    if spec.kind == "stdout":
        return StdoutChannel(name)
    return LogChannel(name)


def build_channels(settings: AlertSettings) -> dict[str, Channel]:
    """Every channel the settings configure, by name.

    ``log`` and ``stdout`` always exist; ``webhook`` when ``webhook_url`` is set,
    ``slack`` when ``slack_webhook_url`` is; plus each of ``settings.channels``.
    """
    channels: dict[str, Channel] = {"log": LogChannel(), "stdout": StdoutChannel()}
    if settings.webhook_url:
        key = _secret(settings.webhook_secret)
        if key is None:
            log.warning("alerts.webhook_url is set without alerts.webhook_secret: unsigned")
        channels["webhook"] = WebhookChannel(
            "webhook",
            settings.webhook_url,
            secret=key.encode() if key else None,
            timeout_s=settings.delivery_timeout_s,
        )
    slack = _secret(settings.slack_webhook_url)
    if slack:
        channels["slack"] = SlackChannel("slack", slack, timeout_s=settings.delivery_timeout_s)
    for name, spec in settings.channels.items():
        channels[name] = _named(name, spec, settings)
    return channels
