"""`agentstream kafka up | down | status | fetch`: the project-run local broker."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentstream.core.config import LocalKafkaSettings, load_settings
from agentstream.core.errors import BrokerStartError

if TYPE_CHECKING:
    from agentstream.devtools.localstack import LocalKafka

__all__ = ["EXIT_NOT_RUNNING", "register"]

#: exit code of ``status`` when no broker answers (as in LSB init scripts)
EXIT_NOT_RUNNING = 3
_PLAIN_REPEAT_S = 10.0


class _Output:
    """Progress on stderr (a rich spinner when rich is installed), results on stdout."""

    def __init__(self) -> None:
        self._last_step = ""
        self._last_print = 0.0
        self._status: Any = None
        try:
            from rich.console import Console
        except ImportError:
            self._out: Any = None
            self._err: Any = None
        else:
            self._out = Console(soft_wrap=True, highlight=False)
            self._err = Console(stderr=True, soft_wrap=True, highlight=False)

    def progress(self, step: str, detail: str) -> None:
        text = f"{step}: {detail}" if detail else step
        if self._err is not None:
            if self._status is None:
                self._status = self._err.status(text)
                self._status.start()
            else:
                self._status.update(text)
            return
        now = time.monotonic()
        if step != self._last_step or now - self._last_print >= _PLAIN_REPEAT_S:
            print(text, file=sys.stderr, flush=True)
            self._last_step, self._last_print = step, now

    def done(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def say(self, message: str, style: str = "") -> None:
        self.done()
        if self._out is not None:
            self._out.print(message, style=style or None, markup=False)
        else:
            print(message, flush=True)

    def warn(self, message: str) -> None:
        self.done()
        if self._err is not None:
            self._err.print(message, style="yellow", markup=False)
        else:
            print(message, file=sys.stderr, flush=True)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def _settings(args: argparse.Namespace) -> LocalKafkaSettings:
    settings = load_settings().local_kafka
    overrides = {
        "home": args.home,
        "port": args.port,
        "controller_port": args.controller_port,
        "cache_dir": args.cache_dir,
    }
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def _broker(args: argparse.Namespace, output: _Output) -> LocalKafka:
    from agentstream.devtools.localstack import LocalKafka

    return LocalKafka(_settings(args), progress=output.progress)


def _up(args: argparse.Namespace) -> int:
    output = _Output()
    try:
        broker = _broker(args, output)
        try:
            result = broker.start()
        except BrokerStartError as exc:
            output.warn(exc.log_tail or "(the broker log is empty)")
            raise
    finally:
        output.done()
    if result.started:
        output.say(
            f"Kafka broker up at {result.bootstrap} (pid {result.pid}, "
            f"{result.elapsed_s:.1f} s); log: {result.log_file}",
            style="green",
        )
    else:
        output.say(f"Kafka broker already running at {result.bootstrap} (pid {result.pid})")
    return 0


def _down(args: argparse.Namespace) -> int:
    output = _Output()
    try:
        broker = _broker(args, output)
        pid = broker.stop()
    finally:
        output.done()
    if pid is None:
        output.say(f"Kafka broker not running (home {broker.home})")
    else:
        output.say(f"Kafka broker stopped (pid {pid})")
    return 0


def _status(args: argparse.Namespace) -> int:
    output = _Output()
    status = _broker(args, output).status()
    if status.running:
        output.say(f"Kafka broker running at {status.bootstrap} (pid {status.pid})", "green")
        return 0
    if status.pid is not None:
        output.warn(
            f"Kafka broker process {status.pid} is alive but does not answer on "
            f"{status.bootstrap}; log: {status.log_file}"
        )
    else:
        output.say(f"Kafka broker not running (would listen on {status.bootstrap})")
    return EXIT_NOT_RUNNING


def _fetch(args: argparse.Namespace) -> int:
    output = _Output()
    try:
        libs = _broker(args, output).ensure_jars()
    finally:
        output.done()
    output.say(f"Kafka jars ready in {libs} ({sum(1 for _ in libs.glob('*.jar'))} jars)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``kafka up | down | status | fetch``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home", type=Path, help="broker folder (default: local_kafka.home, .local/kafka)"
    )
    common.add_argument("--port", type=_port, help="client port (default: local_kafka.port)")
    common.add_argument(
        "--controller-port", type=_port, help="KRaft controller port (local_kafka.controller_port)"
    )
    common.add_argument(
        "--cache-dir", type=Path, help="jar cache root (default: local_kafka.cache_dir, else home)"
    )
    parser = subparsers.add_parser(
        "kafka",
        help="the local Apache Kafka broker (KRaft)",
        description="Run the project's own Kafka broker: jars from Maven Central, Java 17+.",
    )
    actions = parser.add_subparsers(dest="kafka_action", metavar="ACTION", required=True)
    for name, handler, text in (
        ("up", _up, "start the broker (fetching jars the first time); prints its address"),
        ("down", _down, "stop the broker; harmless when it is not running"),
        ("status", _status, f"exit 0 if it runs and answers, {EXIT_NOT_RUNNING} if not"),
        ("fetch", _fetch, "fetch the broker's jars into the cache (mvn), nothing else"),
    ):
        action = actions.add_parser(name, parents=[common], help=text, description=text)
        action.set_defaults(handler=handler)
