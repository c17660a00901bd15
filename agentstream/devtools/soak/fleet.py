"""The worker processes of the soak (restarted when they die) and the live display."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Fleet", "LiveView", "Status", "Worker", "metric"]


@dataclass
class Status:
    """What the progress display shows (written by several threads)."""

    phase: str = "starting"
    started: float = field(default_factory=time.monotonic)
    planned: int = 0
    sent: int = 0
    kills: int = 0
    crashes: int = 0
    log: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    emitter: dict[str, int] = field(default_factory=dict)

    def note(self, text: str) -> None:
        stamp = time.monotonic() - self.started
        self.log.append(f"{stamp:6.1f}s  {text}")


def metric(page: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in page.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


class Worker:
    """One ``agentstream worker`` child process, restartable."""

    def __init__(self, index: int, env: dict[str, str], home: Path, sink: bool) -> None:
        self.index = index
        self.env = env
        self.home = home
        self.sink = sink
        self.ready = home / f"worker-{index}.ready"
        self.log = home / f"worker-{index}.log"
        self.port = int(env["AGENTSTREAM_WORKER__WEB_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.expected_exit = False

    def start(self) -> None:
        self.ready.unlink(missing_ok=True)
        extra = [] if self.sink else ["--no-sink", "--no-alerts"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentstream", "worker", *extra],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.expected_exit = False

    def wait_ready(self, timeout_s: float, status: Status) -> bool:
        """Until the worker consumes (its ready file); False if it exited meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready.exists():
                return True
            if self.proc is None or self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        status.note(f"worker {self.index} not ready after {timeout_s:.0f}s")
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.expected_exit = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, grace_s: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        self.expected_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def page(self) -> str | None:
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return None


class Fleet:
    """The workers, restarted when they die unexpectedly (a supervisor)."""

    def __init__(
        self,
        workers: list[Worker],
        status: Status,
        spawn: Callable[[int], Worker] | None = None,
    ) -> None:
        self.workers = workers
        self.status = status
        #: a new worker (a new identity) for :meth:`join`
        self.spawn = spawn
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._supervise, name="soak-supervisor", daemon=True)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        self.thread.start()

    def _supervise(self) -> None:
        while not self.stop_event.wait(0.5):
            for worker in self.workers:
                with worker.lock:
                    proc = worker.proc
                    if proc is None or worker.expected_exit or proc.poll() is None:
                        continue
                    self.status.crashes += 1
                    self.status.note(
                        f"worker {worker.index} exited ({proc.returncode}); restarting it"
                    )
                    worker.start()
                self.stop_event.wait(2.0)  # a worker failing at start is not respawned hot

    def kill(self, index: int) -> None:
        worker = self.workers[index]
        with worker.lock:
            pid = worker.proc.pid if worker.proc else None
            worker.kill()
            self.status.kills += 1
            self.status.note(f"SIGKILL worker {index} (pid {pid}); restarted")
            worker.start()

    def leave(self, index: int) -> None:
        """SIGKILL worker ``index`` for good: its partitions move to the others (after its
        static membership's session), a scale-in the hard way."""
        worker = self.workers[index]
        with worker.lock:
            pid = worker.proc.pid if worker.proc else None
            worker.kill()
            self.status.kills += 1
            self.status.note(f"SIGKILL worker {index} (pid {pid}) for good: a rebalance")

    def join(self) -> Worker:
        """Start a new worker with a new identity: the group rebalances."""
        if self.spawn is None:
            raise RuntimeError("this fleet cannot spawn workers")
        worker = self.spawn(len(self.workers))
        with worker.lock:
            worker.start()
        self.workers.append(worker)
        self.status.note(f"worker {worker.index} joins (a new identity): a rebalance")
        return worker

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        for worker in self.workers:
            with worker.lock:
                code = worker.stop()
            self.status.note(f"worker {worker.index} stopped (exit {code})")


def view(status: Status) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    elapsed = time.monotonic() - status.started
    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"[bold]phase[/] {status.phase}",
        f"[bold]elapsed[/] {elapsed:,.0f}s",
        f"[bold]sent[/] {status.sent:,}/{status.planned:,}",
        f"[bold]kills[/] {status.kills}",
        f"[bold]crashes[/] {status.crashes}",
    )
    e = status.emitter
    if e:
        head.add_row(
            f"[bold]delivered[/] {e.get('delivered', 0):,}",
            f"[bold]spooled[/] {e.get('spooled', 0):,}",
            f"[bold]replayed[/] {e.get('replayed', 0):,}",
            f"[bold]queued[/] {e.get('queued', 0):,}",
            "",
        )
    f = status.figures
    if f:
        head.add_row(
            f"[bold]processed[/] {f.get('processed', 0):,.0f}",
            f"[bold]lag[/] {f.get('lag', 0):,.0f}",
            f"[bold]rows stored[/] {f.get('stored', 0):,.0f}",
            "",
            "",
        )
    log = Table(title="faults and events", expand=True, show_header=False)
    log.add_column("what")
    for line in status.log[-10:]:
        log.add_row(line)
    return Panel(Group(head, log), title="agentstream soak")


class LiveView:
    """Rendered afresh at every refresh of the live display (rich calls ``__rich__``)."""

    def __init__(self, status: Status) -> None:
        self.status = status

    def __rich__(self) -> Any:
        return view(self.status)
