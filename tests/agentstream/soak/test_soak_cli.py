"""`agentstream soak`: options and the refusal of unknown faults (before anything starts)."""

from __future__ import annotations

import pytest

from agentstream.cli._app import build_parser, main


def test_the_soak_command_takes_duration_seed_faults_and_workers() -> None:
    args = build_parser().parse_args(
        ["soak", "--duration", "60", "--seed", "3", "--faults", "kill,clock", "--workers", "2"]
    )
    assert (args.duration, args.seed, args.faults, args.workers) == (60.0, 3, "kill,clock", 2)


def test_an_unknown_fault_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["soak", "--faults", "kill,meteor", "--no-display"]) == 1
    err = capsys.readouterr().err
    assert "--faults: unknown meteor" in err
    assert "broker" in err
