"""Alert channels and delivery: webhook (HMAC-signed JSON), Slack-compatible, log, stdout.

* :func:`build_channels` — the channels the settings configure, by name;
* :class:`Notifier` — non-blocking delivery: one bounded queue (drop-oldest) and
  one worker thread per channel, retries with exponential backoff, counters;
* :class:`AlertDispatcher` — consumes Alert events from the alerts topic and
  hands each to its channels, committing offsets only once delivery ended;
* :func:`alerts_from_clickhouse` / :func:`firing_from_clickhouse` /
  :func:`alerts_from_topic` / :func:`firing` — past and current alerts.

Example::

    with Notifier(build_channels(settings.alerts), settings.alerts) as notifier:
        notifier.deliver(alert)          # returns at once
        notifier.flush(timeout=30)
"""

from agentstream.sinks.alerting._channels import (
    Channel,
    LogChannel,
    SlackChannel,
    StdoutChannel,
    WebhookChannel,
    build_channels,
)
from agentstream.sinks.alerting._dispatcher import AlertDispatcher, DispatcherStats
from agentstream.sinks.alerting._history import (
    alerts_from_clickhouse,
    alerts_from_topic,
    firing,
    firing_from_clickhouse,
)
from agentstream.sinks.alerting._notifier import ChannelStats, Notifier, Outcome, OutcomeCallback
from agentstream.sinks.alerting._payloads import (
    ALERT_ID_HEADER,
    PAYLOAD_VERSION,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    slack_escape,
    slack_payload,
    verify_signature,
    webhook_body,
    webhook_payload,
)

__all__ = [
    "ALERT_ID_HEADER",
    "PAYLOAD_VERSION",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AlertDispatcher",
    "Channel",
    "ChannelStats",
    "DispatcherStats",
    "LogChannel",
    "Notifier",
    "Outcome",
    "OutcomeCallback",
    "SlackChannel",
    "StdoutChannel",
    "WebhookChannel",
    "alerts_from_clickhouse",
    "alerts_from_topic",
    "build_channels",
    "firing",
    "firing_from_clickhouse",
    "sign",
    "slack_escape",
    "slack_payload",
    "verify_signature",
    "webhook_body",
    "webhook_payload",
]
