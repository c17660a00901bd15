"""What channels send: the webhook JSON body and its signature, the Slack payload.

Webhook requests carry:

* ``X-Agentstream-Alert-Id``: the alert's id (the same on a retry: receivers
  deduplicate on it);
* ``X-Agentstream-Timestamp``: Unix seconds when the request was signed;
* ``X-Agentstream-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with
  ``alerts.webhook_secret``, of ``<timestamp>.<raw body>`` (present when a
  secret is configured). A receiver recomputes it over the raw bytes and
  compares in constant time (:func:`verify_signature`), and may refuse old
  timestamps to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from agentstream.schemas import Alert, AlertState, Severity

__all__ = [
    "ALERT_ID_HEADER",
    "PAYLOAD_VERSION",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "slack_escape",
    "slack_payload",
    "verify_signature",
    "webhook_body",
    "webhook_payload",
]

SIGNATURE_HEADER = "X-Agentstream-Signature"
TIMESTAMP_HEADER = "X-Agentstream-Timestamp"
ALERT_ID_HEADER = "X-Agentstream-Alert-Id"
#: ``version`` of the webhook JSON body
PAYLOAD_VERSION = 1

_SLACK_COLOURS = {
    Severity.CRITICAL: "#d40e0d",
    Severity.WARNING: "#e8a317",
    Severity.INFO: "#439fe0",
}
_RESOLVED_COLOUR = "#2eb886"


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The webhook JSON document: every Alert field (timestamps ISO-8601 UTC) + ``version``."""
    return {"version": PAYLOAD_VERSION, **alert.model_dump(mode="json")}


def webhook_body(alert: Alert) -> bytes:
    """The exact bytes POSTed to a webhook (compact, key order stable)."""
    return json.dumps(webhook_payload(alert), separators=(",", ":"), sort_keys=True).encode()


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """True when ``signature`` is :func:`sign` of this timestamp and body (constant time)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def slack_escape(text: str) -> str:
    """``text`` as Slack shows it literally: ``&``, ``<`` and ``>`` escaped, so data can make
    no mention (``<!channel>``, ``<@U123>``) and no link (``<https://evil|Sign in>``)."""
    return text.translate(_SLACK_ESCAPES)


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message (``text`` + one coloured attachment).

    Every string that comes from events or rules (rule id, scope key with its tool and
    agent names, metric, message) is escaped (:func:`slack_escape`), and ``parse: none``
    asks Slack not to turn names in the text into mentions or links.
    """
    firing = alert.state == AlertState.FIRING
    icon = ":rotating_light:" if firing else ":white_check_mark:"
    esc = slack_escape
    title = (
        f"{icon} [{alert.state}] {alert.severity} {esc(alert.rule_id)} on {esc(alert.scope_key)}"
    )
    colour = _SLACK_COLOURS[alert.severity] if firing else _RESOLVED_COLOUR
    window = (
        f"{alert.window_start:%Y-%m-%d %H:%M:%S} - {alert.window_end:%H:%M:%S} UTC"
        f" ({alert.resolution})"
    )
    return {
        "text": f"{title}\n{esc(alert.message)}",
        "parse": "none",
        "attachments": [
            {
                "color": colour,
                "fallback": esc(alert.message),
                "fields": [
                    {"title": "Metric", "value": esc(alert.metric), "short": True},
                    {"title": "Value", "value": f"{alert.value:g}", "short": True},
                    {
                        "title": "Condition",
                        "value": f"{alert.comparator} {alert.threshold:g}",
                        "short": True,
                    },
                    {"title": "Window", "value": window, "short": True},
                ],
                "footer": f"agentstream alert {alert.alert_id}",
                "ts": int(alert.fired_at.timestamp()),
            }
        ],
    }
