"""The Quix Streams peer's process contract: its command line, its one JSON line, its
failures as one line each (no broker: the job itself runs in ``make bench``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from bench._quix import QuixBench, parser, peer_command, peer_skipped, run_peer


def test_the_command_line_is_what_the_peer_reads_back() -> None:
    topics = ["p.tool_calls", "p.model_calls", "p.run_started"]
    command = peer_command(Path("/peers/bin/python"), "127.0.0.1:1234", topics, 50_000, grace_s=2.5)
    assert command[:3] == ["/peers/bin/python", "-m", "bench._quix"]
    args = parser().parse_args(command[3:])
    assert (args.bootstrap, args.topics, args.events, args.grace) == (
        "127.0.0.1:1234",
        topics,
        50_000,
        2.5,
    )


def test_the_result_line_round_trips_after_other_output() -> None:
    result = QuixBench(events=50_000, events_per_s=7_612.25, version="3.28.0")
    stdout = f"some library's banner\n{{not ours\n{result.to_json()}\n"
    assert QuixBench.from_output(stdout) == result
    assert stdout.count("\n") == 3  # the result is one line


def test_output_without_a_result_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no result line"):
        QuixBench.from_output("Traceback ...\n")


def test_a_missing_peer_python_is_a_one_line_reason(tmp_path: Path) -> None:
    missing = tmp_path / "bin" / "python"
    reason = peer_skipped(missing)
    assert reason is not None
    assert str(missing) in reason
    assert "\n" not in reason
    assert peer_skipped(None) is not None
    assert peer_skipped(Path(sys.executable)) is None


def test_a_failing_peer_raises_with_its_last_stderr_line() -> None:
    # the project's venv has no Quix Streams: the peer process starts, parses its
    # arguments and fails on the import, as a peer venv without it would
    if importlib.util.find_spec("quixstreams") is not None:
        pytest.skip("Quix Streams is importable here")
    with pytest.raises(RuntimeError, match=r"exited 1: .*quixstreams"):
        run_peer(
            Path(sys.executable),
            "127.0.0.1:1",
            ["t"],
            1,
            grace_s=1.0,
            timeout_s=60.0,
        )


def test_a_relative_peer_python_means_the_callers_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the peer runs from the repository root: a relative path must still name the file
    # next to the caller, and the caller's PYTHONPATH must stay behind the root's
    peer = tmp_path / "peer-python"
    result = QuixBench(events=3, events_per_s=1.5, version="x")
    peer.write_text(
        "#!/bin/sh\n"
        'case "$PYTHONPATH" in *:/callers/path) ;;\n'
        '*) echo "PYTHONPATH=$PYTHONPATH" >&2; exit 3;; esac\n'
        f"echo '{result.to_json()}'\n"
    )
    peer.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "/callers/path")
    assert peer_skipped(Path(peer.name)) is None
    got = run_peer(Path(peer.name), "127.0.0.1:1", ["t"], 3, grace_s=1.0, timeout_s=60.0)
    assert got == result
