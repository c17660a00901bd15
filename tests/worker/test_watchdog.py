"""The worker's watchdog: a component stuck in a call that never returns ends the process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from agentstream.core.config import WorkerSettings

# a component whose run() never comes back (as a client call stuck in C would): its
# progress stays where open() left it
_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from agentstream.core.config import Settings, WorkerSettings
    from agentstream.worker._worker import Worker

    class Hung:
        def open(self): self.at = time.monotonic()
        def progress(self): return self.at
        def run(self, stop): blocked_in_a_client_call()
        def close(self): pass
        def abort(self): pass

    def blocked_in_a_client_call():
        threading.Event().wait()

    class Alive(Hung):
        def run(self, stop):
            while not stop.wait(0.05):
                self.at = time.monotonic()

    settings = Settings(worker=WorkerSettings(restore_timeout_s=0.5, stuck_after_s=1.0))
    worker = Worker(settings)
    worker._supervise("alive", Alive).start()
    worker._supervise(sys.argv[1], Hung).start()
    sys.exit(worker.wait())
    """
)


def test_a_component_stuck_past_its_limit_ends_the_worker_with_its_stack() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "processors"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "processors has not come round" in done.stderr
    assert "blocked_in_a_client_call" in done.stderr  # where it is stuck
    assert "alive has not come round" not in done.stderr


def test_the_limit_must_exceed_the_restore_timeout() -> None:
    with pytest.raises(ValidationError, match="stuck_after_s"):
        WorkerSettings(restore_timeout_s=300, stuck_after_s=200)
