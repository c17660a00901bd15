"""The scale bench's CPU accounting: read from /proc, checked against the interpreter's own
clock (no broker: the drains themselves run in ``make bench``)."""

from __future__ import annotations

import os
import sys
import time

import pytest

from bench._harness import machine_busy_s, process_cpu_s
from bench._scale import _CpuMeter

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(1_000))


def test_a_process_cpu_time_read_from_proc_matches_the_interpreters() -> None:
    before_proc, before_own = process_cpu_s(os.getpid()), time.process_time()
    machine = machine_busy_s()
    _burn(0.5)
    spent = time.process_time() - before_own
    read = process_cpu_s(os.getpid()) - before_proc
    # /proc counts in clock ticks (1/100 s here): within a few of them
    assert read == pytest.approx(spent, abs=0.05)
    # the machine was busy at least while this process was
    assert machine_busy_s() - machine >= read - 0.05


def test_a_gone_process_reads_as_no_cpu() -> None:
    assert process_cpu_s(2**22 + 12345) == 0.0


class _Process:
    pid = os.getpid()


def test_the_meter_charges_the_cpu_of_a_window_to_its_events() -> None:
    meter = _CpuMeter([_Process()])  # type: ignore[list-item]  # only the pid is read
    assert meter.since_start(100) is None  # not started
    wall = time.monotonic()
    meter.start()
    _burn(0.4)
    use = meter.since_start(400)
    wall = time.monotonic() - wall
    assert use is not None
    # 0.4 s of this process's CPU over 400 events, in /proc's ticks (1/100 s)
    assert use.worker_us_per_event == pytest.approx(1_000, abs=60)
    assert use.workers == pytest.approx(0.4 / wall, abs=0.1)
    # the machine ran at least this process
    assert use.machine_us_per_event >= use.worker_us_per_event - 60
    assert use.machine >= use.workers - 0.1
