"""The scale bench's CPU accounting: read from /proc, checked against the interpreter's own
clock; the ceiling it derives (no broker: the drains themselves run in ``make bench``)."""

from __future__ import annotations

import math
import os
import sys
import time

import pytest

from bench._scale import CpuUse, ScaleBench, _machine_busy_s, _process_cpu_s

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(1_000))


def test_a_process_cpu_time_read_from_proc_matches_the_interpreters() -> None:
    before_proc, before_own = _process_cpu_s(os.getpid()), time.process_time()
    machine = _machine_busy_s()
    _burn(0.5)
    spent = time.process_time() - before_own
    read = _process_cpu_s(os.getpid()) - before_proc
    # /proc counts in clock ticks (1/100 s here): within a few of them
    assert read == pytest.approx(spent, abs=0.05)
    # the machine was busy at least while this process was
    assert _machine_busy_s() - machine >= read - 0.05


def test_a_gone_process_reads_as_no_cpu() -> None:
    assert _process_cpu_s(2**22 + 12345) == 0.0


def test_the_ceiling_is_the_cores_over_what_one_process_kept_busy() -> None:
    def bench(machine: float | None) -> ScaleBench:
        cpu = None if machine is None else CpuUse(1.0, machine, worker_us_per_event=9.0)
        return ScaleBench(1, 1.0, 1.0, 1.0, 1.0, cpu, cpu, cores=2)

    assert bench(1.6).ceiling == pytest.approx(1.25)
    assert bench(0.8).ceiling == 2.0  # never more than two processes' worth
    assert bench(2.0).ceiling == 1.0
    assert math.isnan(bench(None).ceiling)
