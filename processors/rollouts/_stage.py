"""The rollouts stage: reads rollout definitions (compacted topic) and the final rollups,
judges each active rollout's stage (:class:`RolloutJudge`) and publishes, in one Kafka
transaction per batch, the verdicts (``rollout_verdicts``: the ``rollouts`` table), the
rollout's new state (``rollouts`` topic) and an alert per PROMOTE / ROLLBACK (``alerts``
topic, so the existing alert delivery sends it to ``rollouts.channels``).

The stage commits no offsets: its state is the rollouts topic itself (read to its end at
start), and the rollups are re-read from ``reread_margin_s`` before the earliest active
stage's start (Kafka timestamps), so a restarted stage judges the same windows again and
writes the same verdict ids (the table keeps one row per id).

It runs in one worker of a deployment at a time, the holder of its :class:`Lease`:
every worker may enable it (``docker compose up --scale worker=N``); the others wait. A
worker that gets the lease starts the stage as a restart would (the same verdict ids);
one that loses it stops judging.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, untyped
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from agentstream.core import kafka
from agentstream.core.codec import codec_from_settings
from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError, CodecError, ContractError
from agentstream.processors.rollouts._judge import Decision, RolloutJudge
from agentstream.processors.rollouts._lease import Lease
from agentstream.schemas import (
    Alert,
    AlertState,
    Rollout,
    RolloutVerdict,
    Rollup,
    Severity,
    encode_model,
)

__all__ = ["RolloutStage", "verdict_alert"]

log = logging.getLogger("agentstream.processors.rollouts")


def verdict_alert(verdict: RolloutVerdict, channels: tuple[str, ...]) -> Alert:
    """The alert that carries a PROMOTE / ROLLBACK verdict to the alert channels."""
    end = verdict.decided_at
    start = verdict.stage_started_at
    if end <= start:
        from datetime import timedelta

        end = start + timedelta(microseconds=1)
    rollback = verdict.verdict == "ROLLBACK"
    target = "" if verdict.next_percent is None else f" -> {verdict.next_percent}%"
    how = " (manual)" if verdict.manual else ""
    message = (
        f"rollout {verdict.agent_id} {verdict.baseline} -> {verdict.candidate}: "
        f"{verdict.verdict}{how} at stage {verdict.stage_percent}%{target}: {verdict.reason}"
    )
    return Alert(
        alert_id=verdict.verdict_id,
        rule_id=f"rollout:{verdict.agent_id}",
        state=AlertState.FIRING,
        severity=Severity.CRITICAL if rollback else Severity.INFO,
        scope_key=f"agent={verdict.agent_id}@{verdict.candidate}",
        metric="rollout_stage_percent",
        value=float(verdict.stage_percent),
        threshold=float(verdict.next_percent or 0),
        comparator="==",
        resolution="1m",
        window_start=start,
        window_end=end,
        fired_at=verdict.decided_at,
        message=message[:4000],
        channels=channels,
    )


class RolloutStage:
    """:meth:`open`, then :meth:`poll` until stopped (or :meth:`run`), then :meth:`close`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        rs = settings.rollouts
        self.judge = RolloutJudge(rs)
        self._codec = codec_from_settings(settings, role="consumer")
        topics = settings.topics
        self._rollups_topic = topics.name("rollups")
        self._rollouts_topic = topics.name("rollouts")
        self._verdicts_topic = topics.name("rollout_verdicts")
        self._alerts_topic = topics.name("alerts")
        conf = {
            "group.id": rs.consumer_group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self._definitions = kafka.consumer(settings, "rollouts", conf)
        self._rollups = kafka.consumer(settings, "rollouts", conf)
        worker = settings.worker
        self._producer = kafka.producer(
            settings,
            "rollouts",
            {"transactional.id": f"{worker.app_id}-rollouts-{worker.instance_id}"},
        )
        self._read_from_us: int | None = None
        self.verdicts: list[RolloutVerdict] = []
        self._lease = Lease(settings, "rollouts")
        #: the rollouts are read and the rollups assigned (this worker holds the lease)
        self._started = False

    # -- start-up ---------------------------------------------------------------------

    def open(self) -> None:
        """Compact the rollouts topic, fence older instances, ask for the lease; the stage
        starts once this worker holds it (:meth:`poll`)."""
        self._compact()
        try:
            self._producer.init_transactions(30)
        except KafkaException as exc:
            raise AgentstreamError(f"rollouts: cannot start transactions: {exc}") from exc
        self._lease.open()

    @property
    def leading(self) -> bool:
        """This worker holds the lease and runs the stage."""
        return self._started

    def _start(self) -> None:
        """Read the rollouts to the end, then assign the rollups from the earliest active
        stage (a new judge: what a restart does)."""
        self.judge = RolloutJudge(self.settings.rollouts)
        parts = self._partitions(self._definitions, self._rollouts_topic)
        assigned = [TopicPartition(self._rollouts_topic, p, OFFSET_BEGINNING) for p in parts]
        self._definitions.assign(assigned)

        def definition(message: Any) -> None:
            if not message.error():
                self._definition(message.value())

        self._read_to_end(self._definitions, assigned, definition)
        self._seek_rollups()
        self._started = True
        log.info("rollouts: stage started, judging %d rollout(s)", len(self.judge.rollouts))

    def _stop(self) -> None:
        """The lease went to another worker: stop reading, forget the judge's state."""
        self._definitions.unassign()
        self._rollups.unassign()
        self.judge = RolloutJudge(self.settings.rollouts)
        self._read_from_us = None
        self._started = False
        log.info("rollouts: stage stopped (another worker holds the lease)")

    def _compact(self) -> None:
        admin = kafka.admin_client(self.settings)
        resource = ConfigResource(
            ConfigResource.Type.TOPIC,
            self._rollouts_topic,
            incremental_configs=[
                ConfigEntry(
                    "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET
                )
            ],
        )
        for future in admin.incremental_alter_configs([resource]).values():
            try:
                future.result(30)
            except KafkaException as exc:
                raise AgentstreamError(
                    f"rollouts: cannot make {self._rollouts_topic} compacted: {exc}"
                ) from exc

    @staticmethod
    def _partitions(consumer: Any, topic: str) -> list[int]:
        metadata = consumer.list_topics(topic, timeout=30)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise AgentstreamError(
                f"rollouts: topic {topic} does not exist (agentstream topics create)"
            )
        return sorted(info.partitions)

    def _seek_rollups(self) -> None:
        """(Re)assign the rollups from the earliest active stage's start minus the margin."""
        start = self.judge.earliest_stage_start_us()
        topic = self._rollups_topic
        parts = self._partitions(self._rollups, topic)
        if start is None:
            self._rollups.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
            self._read_from_us = None
            return
        from_ms = max(0, (start // 1000) - int(self.settings.rollouts.reread_margin_s * 1000))
        found = self._rollups.offsets_for_times(
            [TopicPartition(topic, p, from_ms) for p in parts], 30
        )
        assigned = [
            TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
            for tp in found
        ]
        self._rollups.assign(assigned)
        self._read_from_us = start
        self._judge_backlog(assigned)

    def _judge_backlog(self, assigned: list[Any]) -> None:
        """Judge what the rollups topic holds now, from ``assigned`` to its end, as one batch.

        The judge takes rollups in window order: a newer window triggers the judgment of
        the stage up to the older ones. Read again partition after partition (whatever the
        fetches return first), one version's newer windows could come before the other's
        older ones and the stage be judged without them (then never again, once no newer
        window comes); read to the end first, the backlog is judged in window order.
        """
        resolution = self.settings.rollouts.resolution
        backlog: list[Rollup] = []

        def keep(message: Any) -> None:
            rollup = self._rollup(message)
            if rollup is not None and rollup.resolution == resolution:
                backlog.append(rollup)

        self._read_to_end(self._rollups, assigned, keep)
        if backlog:
            self.publish(self.judge.add_rollups(backlog))

    def _read_to_end(self, consumer: Any, assigned: list[Any], take: Callable[[Any], None]) -> None:
        """Hand ``take`` every record of ``assigned`` (partitions with the offsets they were
        assigned at) up to the end each partition has now; ``restore_timeout_s`` at most."""
        ends = {tp.partition: consumer.get_watermark_offsets(tp, 10)[1] for tp in assigned}
        todo = {
            tp.partition
            for tp in assigned
            if ends[tp.partition] > 0
            and (tp.offset == OFFSET_BEGINNING or 0 <= tp.offset < ends[tp.partition])
        }
        topic = assigned[0].topic if assigned else ""
        deadline = time.monotonic() + self.settings.worker.restore_timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise AgentstreamError(f"rollouts: {topic} not read to its end")
            for message in consumer.consume(2_000, 0.5):
                take(message)
            # positions, not message offsets: a transaction's commit marker is never delivered
            for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= ends[tp.partition]:
                    todo.discard(tp.partition)

    def _rollup(self, message: Any) -> Rollup | None:
        value = message.value()
        if message.error() or value is None:
            return None
        try:
            return self._codec.decode_model(value, Rollup)
        except (CodecError, ContractError) as exc:
            log.warning("rollouts: a rollup that does not decode is ignored: %s", exc)
            return None

    # -- the loop ---------------------------------------------------------------------

    def _definition(self, value: bytes | None) -> bool:
        if value is None:
            return False
        try:
            rollout = self._codec.decode_model(value, Rollout)
        except (CodecError, ContractError) as exc:
            log.warning("rollouts: a rollout record that does not decode is ignored: %s", exc)
            return False
        return self.judge.set_rollout(rollout)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll(0.2)

    def poll(self, timeout: float) -> int:
        """One step: new rollout definitions, then a batch of rollups; the records read.
        Without the lease: wait up to ``timeout`` for it (0 records)."""
        if not self._lease.poll(0):
            if self._started:
                self._stop()
            self._lease.poll(timeout)
            return 0
        if not self._started:
            self._start()
            if not self._lease.poll(0):  # the start took long enough to lose it
                self._stop()
                return 0
        read = 0
        reseek = False
        for message in self._definitions.consume(100, 0):
            read += 1
            if not message.error() and self._definition(message.value()):
                start = self.judge.earliest_stage_start_us()
                reseek = (
                    reseek
                    or self._read_from_us is None
                    or (start is not None and start < self._read_from_us)
                )
        if reseek:
            self._seek_rollups()
        rollups: list[Rollup] = []
        for message in self._rollups.consume(2_000, timeout):
            read += 1
            rollup = self._rollup(message)
            if rollup is not None:
                rollups.append(rollup)
        if rollups:
            self.publish(self.judge.add_rollups(rollups))
        return read

    def publish(self, decisions: list[Decision]) -> None:
        """The decisions' verdicts, states and alerts, in one transaction."""
        if not decisions:
            return
        channels = self.settings.rollouts.channels
        self._producer.begin_transaction()
        try:
            for d in decisions:
                v = d.verdict
                key = v.agent_id.encode()
                self._producer.produce(self._verdicts_topic, encode_model(v), key)
                if d.state is not None:
                    self._producer.produce(self._rollouts_topic, encode_model(d.state), key)
                if v.verdict != "HOLD":
                    alert = verdict_alert(v, channels)
                    self._producer.produce(
                        self._alerts_topic,
                        encode_model(alert),
                        f"{alert.rule_id}|{alert.scope_key}".encode(),
                    )
                log.info(
                    "rollout %s: %s at %d%%: %s", v.agent_id, v.verdict, v.stage_percent, v.reason
                )
            # refused by the broker if another worker holds the lease by now (module doc)
            offsets, group = self._lease.fence()
            self._producer.send_offsets_to_transaction(offsets, group, 30)
            self._producer.commit_transaction(30)
        except BaseException as exc:
            # whatever failed inside the transaction (Kafka, encoding, an interrupt), it
            # must not stay open: the next begin_transaction would fail
            self._producer.abort_transaction(30)
            if isinstance(exc, KafkaException):
                raise AgentstreamError(f"rollouts: publishing verdicts failed: {exc}") from exc
            raise
        self.verdicts.extend(d.verdict for d in decisions)

    def close(self) -> None:
        self._lease.close()
        self._definitions.close()
        self._rollups.close()
        self._producer.flush(10)
