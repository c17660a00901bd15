"""The project-run Apache Kafka broker: KRaft, broker and controller in one JVM.

Layout under ``home`` (default ``.local/kafka``)::

    <cache_dir or home>/<version>/libs/   jars fetched once by mvn (shared, see JarCache)
    config/server.properties              rendered from the settings on every start
    config/log4j2.yaml
    data/                                 log.dirs; formatted once (meta.properties)
    logs/server.log, logs/kafka.out       broker log; the JVM's stdout/stderr
    kafka.pid

The broker runs detached (own session) and outlives the process that started
it; :meth:`LocalKafka.stop` finds it again through the pid file.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from agentstream.core.config import LocalKafkaSettings
from agentstream.core.errors import BrokerStartError, ConfigError, LocalStackError, ToolMissingError
from agentstream.devtools.localstack._jars import JarCache, ProgressFn, _no_progress
from agentstream.devtools.localstack._render import render_log4j2, render_server_properties
from agentstream.devtools.localstack._system import (
    check_ports_free,
    file_lock,
    find_tool,
    format_bootstrap,
    parse_java_major,
    pid_alive,
    process_cmdline,
    read_pid_file,
    tail_lines,
    terminate,
)

__all__ = ["BrokerStatus", "LocalKafka", "StartResult", "broker_answers"]

MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
_LOG_TAIL_LINES = 20
_POLL_S = 0.25
_HEAP = re.compile(r"[1-9][0-9]*[kKmMgG]?")


@dataclass(frozen=True)
class BrokerStatus:
    """What :meth:`LocalKafka.status` found."""

    bootstrap: str
    #: pid of this home's broker process, if it is alive
    pid: int | None
    #: the broker answered a metadata request
    answering: bool
    home: Path
    log_file: Path

    @property
    def running(self) -> bool:
        """The process is alive and the broker answers."""
        return self.pid is not None and self.answering


@dataclass(frozen=True)
class StartResult:
    """What :meth:`LocalKafka.start` did."""

    #: False when the broker was already running
    started: bool
    pid: int
    bootstrap: str
    #: seconds from the call to the first metadata answer
    elapsed_s: float
    #: the data folder was formatted by this start
    formatted: bool
    log_file: Path


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tcp_open(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def broker_answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """Whether the broker at ``bootstrap`` answers a metadata request with a live broker."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


class LocalKafka:
    """One local broker, identified by its home folder."""

    def __init__(
        self, settings: LocalKafkaSettings | None = None, *, progress: ProgressFn | None = None
    ) -> None:
        self.settings = settings if settings is not None else LocalKafkaSettings()
        if not _HEAP.fullmatch(self.settings.heap):
            raise ConfigError(
                f"AGENTSTREAM_LOCAL_KAFKA__HEAP: not a JVM heap size: {self.settings.heap!r}"
            )
        self.home = self.settings.home.expanduser().resolve()
        cache_root = self.settings.cache_dir or self.settings.home
        self.jars = JarCache(
            cache_root.expanduser().resolve(), self.settings.version, self.settings.scala_version
        )
        self.config_dir = self.home / "config"
        self.data_dir = self.home / "data"
        self.logs_dir = self.home / "logs"
        self.server_properties = self.config_dir / "server.properties"
        self.log4j_config = self.config_dir / "log4j2.yaml"
        self.log_file = self.logs_dir / "server.log"
        self.out_file = self.logs_dir / "kafka.out"
        self.pid_file = self.home / "kafka.pid"
        self._lock = self.home / ".lock"
        self._progress = progress or _no_progress
        self._java_path: str | None = None
        #: log sizes when the broker was launched: a failure shows only what came after
        self._log_marks = (0, 0)

    def __repr__(self) -> str:
        return f"LocalKafka(home={str(self.home)!r}, bootstrap={self.bootstrap!r})"

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return format_bootstrap(self.settings.host, self.settings.port)

    def ensure_jars(self) -> Path:
        """The jar folder, fetched with mvn unless the cache is already complete."""
        return self.jars.ensure(self.settings.mvn, self.settings.maven_repo_local, self._progress)

    def pid(self) -> int | None:
        """The pid of this home's broker if that process is alive (answering or not)."""
        pid = read_pid_file(self.pid_file)
        if pid is None or not pid_alive(pid):
            return None
        cmdline = " ".join(process_cmdline(pid))
        if MAIN_CLASS not in cmdline or str(self.server_properties) not in cmdline:
            return None  # the pid was reused by another process
        return pid

    def status(self, timeout_s: float = 5.0) -> BrokerStatus:
        """Whether the broker runs here: pid alive, ``kafka.Kafka`` and a metadata answer."""
        pid = self.pid()
        answering = (
            pid is not None
            and _tcp_open(self.settings.host, self.settings.port, timeout_s)
            and broker_answers(self.bootstrap, timeout_s)
        )
        return BrokerStatus(self.bootstrap, pid, answering, self.home, self.log_file)

    def start(self) -> StartResult:
        """Start the broker (fetching jars and formatting storage if needed) and wait for it.

        Harmless when it already runs. Raises ToolMissingError, PortInUseError or
        BrokerStartError (with the log tail); a broker that fails to come up is killed.
        """
        started_at = time.monotonic()
        deadline = started_at + self.settings.start_timeout_s
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self._lock):
            pid = self.pid()
            if pid is not None:
                self._check_same_config()
                self._wait_ready(pid, deadline, started_at)
                return StartResult(
                    False, pid, self.bootstrap, time.monotonic() - started_at, False, self.log_file
                )
            self.pid_file.unlink(missing_ok=True)
            java = self._java()
            server_properties = render_server_properties(self.settings, self.data_dir)
            check_ports_free(
                self.settings.host, (self.settings.port, self.settings.controller_port)
            )
            self.ensure_jars()
            for folder in (self.config_dir, self.data_dir, self.logs_dir):
                folder.mkdir(parents=True, exist_ok=True)
            self.server_properties.write_text(server_properties)
            self.log4j_config.write_text(render_log4j2(self.log_file))
            formatted = self._format_storage(java)
            pid = self._spawn(java)
            self.pid_file.write_text(f"{pid}\n")
            try:
                self._wait_ready(pid, deadline, started_at)
            except BaseException:  # failed, timed out or interrupted: leave nothing behind
                terminate(pid, grace_s=5.0)
                self.pid_file.unlink(missing_ok=True)
                raise
        return StartResult(
            True, pid, self.bootstrap, time.monotonic() - started_at, formatted, self.log_file
        )

    def stop(self) -> int | None:
        """Stop the broker (SIGTERM, SIGKILL after the grace); its pid, or None if none ran."""
        if not self.home.is_dir():
            return None
        with file_lock(self._lock):
            pid = self.pid()
            if pid is not None:
                self._progress(f"stopping the Kafka broker (pid {pid})", "")
                terminate(pid, self.settings.stop_timeout_s)
            self.pid_file.unlink(missing_ok=True)
        return pid

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The end of the broker log, then of the JVM's own output if it has any."""
        return self._tail(lines, (0, 0))[0]

    # -- internals -------------------------------------------------------------------------

    def _java(self) -> str:
        if self._java_path is None:
            java = find_tool(
                self.settings.java, "AGENTSTREAM_LOCAL_KAFKA__JAVA", "the broker runs on Java 17+"
            )
            kafka_major = self.settings.version.split(".")[0]
            needed = 11 if kafka_major.isdigit() and int(kafka_major) < 4 else 17
            try:
                out = subprocess.run(
                    [java, "-version"], capture_output=True, text=True, timeout=60, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ToolMissingError(
                    f"cannot run {java} -version ({exc}); set AGENTSTREAM_LOCAL_KAFKA__JAVA"
                ) from exc
            major = parse_java_major(out.stderr + out.stdout)
            if major is not None and major < needed:
                raise ToolMissingError(
                    f"{java} is Java {major}; Kafka {self.settings.version} needs Java {needed} "
                    "or newer: install it or set AGENTSTREAM_LOCAL_KAFKA__JAVA to its path"
                )
            self._java_path = java
        return self._java_path

    def _check_same_config(self) -> None:
        """A running broker must have been started with the current settings."""
        try:
            running = self.server_properties.read_text()
        except OSError:
            running = ""
        if running != render_server_properties(self.settings, self.data_dir):
            raise LocalStackError(
                f"a Kafka broker already runs in {self.home} with other settings (ports?): "
                "stop it first (agentstream kafka down)"
            )

    def _jvm(self, java: str, heap: str) -> list[str]:
        return [
            java,
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            f"-XX:ErrorFile={self.logs_dir}/hs_err_pid%p.log",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            self.jars.classpath,
        ]

    def _storage_tool(self, java: str, *args: str) -> str:
        command = [*self._jvm(java, "256m"), _STORAGE_TOOL, *args]
        try:
            out = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=self.settings.start_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerStartError(f"{_STORAGE_TOOL} {args[0]} timed out") from exc
        output = (out.stdout + out.stderr).strip()
        if out.returncode != 0:
            last = output.splitlines()[-1] if output else "no output"
            raise BrokerStartError(
                f"{_STORAGE_TOOL} {args[0]} failed (exit {out.returncode}): {last}",
                log_tail="\n".join(output.splitlines()[-_LOG_TAIL_LINES:]),
            )
        return output

    def _format_storage(self, java: str) -> bool:
        """Format ``data_dir`` for KRaft unless it already is; whether it formatted."""
        if (self.data_dir / "meta.properties").is_file():
            return False
        self._progress("formatting the KRaft storage", str(self.data_dir))
        lines = self._storage_tool(java, "random-uuid").splitlines()
        cluster_id = lines[-1].strip() if lines else ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id):
            raise BrokerStartError(f"{_STORAGE_TOOL} random-uuid printed no id: {cluster_id!r}")
        self._storage_tool(java, "format", "-t", cluster_id, "-c", str(self.server_properties))
        return True

    def _spawn(self, java: str) -> int:
        """Launch the broker detached, stdout/stderr appended to ``out_file``."""
        argv = [*self._jvm(java, self.settings.heap), MAIN_CLASS, str(self.server_properties)]
        self._log_marks = (_size(self.log_file), _size(self.out_file))
        out = os.open(self.out_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            return os.posix_spawn(
                java,
                argv,
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out, 1),
                    (os.POSIX_SPAWN_DUP2, out, 2),
                ],
                setsid=True,
            )
        finally:
            os.close(out)

    def _wait_ready(self, pid: int, deadline: float, started_at: float) -> None:
        step = f"waiting for the Kafka broker (pid {pid}) on {self.bootstrap}"
        while True:
            if not pid_alive(pid):
                self._fail(f"Kafka broker (pid {pid}) exited while starting")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(
                    f"Kafka broker (pid {pid}) did not answer on {self.bootstrap} "
                    f"within {self.settings.start_timeout_s:g} s"
                )
            probe_s = min(2.0, max(remaining, 0.1))
            if _tcp_open(self.settings.host, self.settings.port, probe_s) and broker_answers(
                self.bootstrap, probe_s
            ):
                return
            self._progress(step, f"{time.monotonic() - started_at:.0f} s")
            time.sleep(_POLL_S)

    def _tail(self, lines: int, marks: tuple[int, int]) -> tuple[str, str]:
        """The log tails written after byte offsets ``marks``, and the likeliest cause."""
        log = tail_lines(self.log_file, lines, marks[0])
        out = tail_lines(self.out_file, lines // 2, marks[1])
        parts = [*log, f"--- {self.out_file} ---", *out] if out else log
        errors = [line for line in log if " ERROR " in line or "Exception" in line]
        hint = errors[-1] if errors else next((line for line in reversed(out) if line.strip()), "")
        return "\n".join(parts), hint.strip()[:300]

    def _fail(self, what: str) -> NoReturn:
        tail, cause = self._tail(_LOG_TAIL_LINES, self._log_marks)
        hint = f"; last error: {cause}" if cause else ""
        raise BrokerStartError(f"{what}{hint}; log: {self.log_file}", log_tail=tail)
