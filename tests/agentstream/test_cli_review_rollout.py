"""The review and rollout commands: --help, README lines, one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentstream.cli import main

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
COMMANDS = [
    ["review"],
    ["review", "queue"],
    ["review", "decide"],
    ["rollout"],
    ["rollout", "start"],
    ["rollout", "status"],
    ["rollout", "history"],
    ["rollout", "rollback"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_new_command_answers_help_and_is_in_the_readme(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: agentstream " + " ".join(command) in capsys.readouterr().out
    assert f"`agentstream {' '.join(command)}" in README or len(command) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--agent", "a", "--baseline", "1", "--candidate", "2", "--stages", "5,100",
             "--guard", "error_rate <= +1pp", "--guard", "latency <= 5%"],
            "--guard[1]: unknown metric 'latency'",
        ),
        (
            ["--agent", "a", "--baseline", "1", "--candidate", "2", "--stages", "50,10,100",
             "--guard", "error_rate <= +1pp"],
            "stages: must increase",
        ),
        (
            ["--agent", "a", "--baseline", "1", "--candidate", "1", "--stages", "0,100",
             "--guard", "error_rate <= +1pp"],
            "candidate: must differ from the baseline",
        ),
        (["--agent", "a"], "missing --baseline, --candidate, --stages"),
    ],
)  # fmt: skip
def test_rollout_start_refuses_bad_definitions_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollout", "start", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_rollout_file_errors_name_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "rollout.yaml"
    spec.write_text(
        "agent: a\nbaseline: '1'\ncandidate: '2'\nstages: 5,10,100\nmin_stage: 1h\n"
        "guards: ['error_rate <= +1pp', 'p95_latency <= +2pp']\n",
        encoding="utf-8",
    )
    assert main(["rollout", "start", "--file", str(spec)]) == 1
    assert f"{spec}: guards[1]: p95_latency is not a rate" in capsys.readouterr().err


def test_review_score_outside_one_to_five_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["review", "decide", "run-1", "--approve", "--score", "7"])
    assert "--score: a whole number from 1 to 5" in capsys.readouterr().err
