"""The durable spool: framing, fsync per batch, torn tails, claim-by-rename, disk errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from agentstream.core.errors import DeliveryError
from agentstream.emitter._frames import scan_frames
from agentstream.emitter._spool import MAGIC, Spool, SpoolRecord, read_frames

ROOT = Path(__file__).resolve().parents[2]


def _records(n: int, start: int = 0) -> list[SpoolRecord]:
    out = []
    for i in range(start, start + n):
        key = None if i % 3 == 0 else f"run-{i % 5}".encode()
        headers = (("traceparent", f"00-{i:032x}-{i:016x}-01".encode()),) if i % 2 else ()
        value = bytes([0xC3, 0x01]) + i.to_bytes(4, "big") + b"\x00\xff" * (i % 7)
        out.append(SpoolRecord(f"agent.topic{i % 2}", key, value, headers))
    return out


def _frame(payload: bytes) -> bytes:
    """A version-2 frame built here, independently: mark, length, CRC-32 of length + payload."""
    length = len(payload).to_bytes(4, "big")
    return b"AGF\xa7" + length + zlib.crc32(length + payload).to_bytes(4, "big") + payload


def _frame_v1(payload: bytes) -> bytes:
    """A version-1 frame (no mark, CRC of the payload): still read."""
    return len(payload).to_bytes(4, "big") + zlib.crc32(payload).to_bytes(4, "big") + payload


def test_records_round_trip_through_a_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first, second = _records(5), _records(7, start=5)
    spool.append(first)
    spool.append(second)
    spool.close()
    [path] = spool.segment_paths()
    assert path.read_bytes().startswith(MAGIC)
    assert Spool.read(path) == first + second
    [claimed] = spool.claim()
    records, torn = claimed.read()
    assert records == first + second
    assert not torn
    claimed.delete()
    assert spool.segment_paths() == []


def test_frame_layout_is_mark_length_crc_payload(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    record = SpoolRecord("t", b"k", b"v", (("h", b"x"),))
    spool.append([record])
    spool.close()
    data = spool.segment_paths()[0].read_bytes()
    assert data == MAGIC + _frame(record.encode())


def test_one_fsync_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    spool = Spool(tmp_path)
    spool.append(_records(1))  # creating the segment fsyncs the file and the folder
    monkeypatch.setattr(os, "fsync", counting_fsync)
    for size in (1, 50, 1000):
        calls.clear()
        spool.append(_records(size))
        assert len(calls) == 1
    spool.close()


@pytest.mark.parametrize("cut", [1, 4, 8, 9, 12, 13, 20])
def test_a_torn_tail_keeps_every_complete_record(tmp_path: Path, cut: int) -> None:
    spool = Spool(tmp_path)
    batches = [_records(3, 0), _records(3, 3), _records(3, 6)]
    for batch in batches:
        spool.append(batch)
    spool.close()
    [path] = spool.segment_paths()
    data = path.read_bytes()
    last = _frame(batches[2][-1].encode())
    assert data.endswith(last)
    path.write_bytes(data[:-cut])  # a crash in the middle of writing the last frame
    records, torn = read_frames(path.read_bytes())
    assert torn
    assert records == batches[0] + batches[1] + batches[2][:-1]
    stats = spool.stats()
    assert (stats.records, stats.corrupt_tails) == (8, 1)


def test_a_corrupt_frame_costs_that_frame_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    records = _records(4)
    spool.append(records)
    spool.close()
    [path] = spool.segment_paths()
    data = bytearray(path.read_bytes())
    second = len(MAGIC) + len(_frame(records[0].encode()))
    data[second + 12 + 3] ^= 0xFF  # a payload byte of the second record: CRC mismatch
    scan = scan_frames(bytes(data))
    assert scan.records == [records[0], *records[2:]]
    assert [(r.offset, r.size, r.frames) for r in scan.bad] == [
        (second, len(_frame(records[1].encode())), 1)
    ]
    assert read_frames(b"not a spool file") == ([], True)
    assert read_frames(b"") == ([], False)


@pytest.mark.parametrize("where", ["magic", "mark", "length", "crc", "payload"])
def test_one_flipped_byte_in_the_first_frame_of_100_loses_one_record(
    tmp_path: Path, where: str
) -> None:
    spool = Spool(tmp_path)
    records = _records(100)
    spool.append(records)
    spool.close()
    [path] = spool.segment_paths()
    data = bytearray(path.read_bytes())
    offset = {"magic": 2, "mark": 9, "length": 14, "crc": 17, "payload": 25}[where]
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    scan = scan_frames(bytes(data))
    expected = records if where == "magic" else records[1:]
    lost = 0 if where == "magic" else 1  # a damaged header costs no record
    assert scan.records == expected
    assert scan.bad_frames == lost
    [info] = spool.infos()
    assert (info.records, info.torn_tail, info.bad_frames) == (len(expected), True, lost)


def test_version_1_segments_are_still_read_and_resynchronised() -> None:
    records = _records(5)
    frames = [_frame_v1(r.encode()) for r in records]
    data = bytearray(b"AGSPOOL1" + b"".join(frames))
    data[8 + len(frames[0]) + 10] ^= 0xFF  # inside the second record
    scan = scan_frames(bytes(data))
    assert scan.records == [records[0], *records[2:]]
    assert [(r.offset, r.size) for r in scan.bad] == [(8 + len(frames[0]), len(frames[1]))]


def test_garbage_between_frames_is_skipped() -> None:
    records = _records(3)
    frames = [_frame(r.encode()) for r in records]
    junk = b"AGF\xa7" + b"\x00\x00\x00\x05garbage" + os.urandom(50)
    data = MAGIC + frames[0] + junk + frames[1] + frames[2]
    scan = scan_frames(data)
    assert scan.records == records
    assert [(r.offset, r.size) for r in scan.bad] == [(len(MAGIC) + len(frames[0]), len(junk))]


def test_claim_by_rename_is_exclusive(tmp_path: Path) -> None:
    writer, replayer_a, replayer_b = Spool(tmp_path), Spool(tmp_path), Spool(tmp_path)
    writer.append(_records(3))
    assert replayer_a.claim() == []  # the writer still holds its segment
    assert [i.state for i in writer.infos()] == ["in use"]
    writer.rotate()
    assert [i.state for i in writer.infos()] == ["waiting"]
    [claimed] = replayer_a.claim()
    assert claimed.path.name.startswith("claimed-seg-")
    assert replayer_b.claim() == []
    assert [i.state for i in writer.infos()] == ["in use"]
    claimed.release()  # e.g. a replay that gave up: someone else may take it over
    [again] = replayer_b.claim()
    assert again.path == claimed.path
    assert again.read()[0] == _records(3)
    again.delete()
    assert writer.segment_paths() == []


def test_segments_are_claimed_oldest_first_and_rotate_at_size(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096)
    records = _records(300)
    for i in range(0, 300, 10):
        spool.append(records[i : i + 10])
    claimed = spool.claim()
    assert len(claimed) > 1
    replayed = [r for segment in claimed for r in segment.read()[0]]
    assert replayed == records
    for segment in claimed:
        segment.delete()


def test_rejected_segments_are_kept_apart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(_records(2), rejected=True)
    spool.append(_records(3))
    stats = spool.stats()
    assert (stats.records, stats.rejected_records, stats.segments) == (3, 2, 2)
    spool.close()
    assert spool.has_waiting()
    normal = spool.claim()
    assert [len(s.read()[0]) for s in normal] == [3]
    normal[0].delete()
    assert not spool.has_waiting()
    [rejected] = spool.claim(include_rejected=True)
    assert rejected.path.name.startswith("rejected-")
    rejected.delete()


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_a_crashed_writers_segment_is_taken_over(tmp_path: Path) -> None:
    result = _run(
        """
        import os, sys
        from agentstream.emitter._spool import Spool, SpoolRecord
        Spool(sys.argv[1]).append([SpoolRecord("t", b"k", b"v")])
        os._exit(0)  # no close: the segment is left open, as after a crash
        """,
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    [claimed] = Spool(tmp_path).claim()
    assert claimed.read() == ([SpoolRecord("t", b"k", b"v")], False)
    claimed.delete()


def test_a_live_writer_in_another_process_keeps_its_segment(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from agentstream.emitter._spool import Spool, SpoolRecord\n"
            "s = Spool(sys.argv[1]); s.append([SpoolRecord('t', None, b'v')])\n"
            "print('ready', flush=True); sys.stdin.readline()\n",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        assert Spool(tmp_path).claim() == []
    finally:
        proc.communicate("\n", timeout=30)
    [claimed] = Spool(tmp_path).claim()
    claimed.delete()


def test_a_refused_write_raises_and_leaves_no_torn_frame(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the kernel refuse writes past 64 KiB (EFBIG), like a full disk
    result = _run(
        """
        import resource, signal, sys
        from agentstream.emitter._spool import Spool, SpoolRecord
        from agentstream.core.errors import DeliveryError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        spool = Spool(sys.argv[1])
        spool.append([SpoolRecord("t", b"k", b"small")])
        try:
            spool.append([SpoolRecord("t", b"k", b"x" * 200_000)])
        except DeliveryError as exc:
            print("refused:", exc)
        spool.append([SpoolRecord("t", b"k", b"after")])
        spool.close()
        """,
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "refused: cannot spool 1 undeliverable event(s)" in result.stdout
    records = [r for path in Spool(tmp_path).segment_paths() for r in Spool.read(path)]
    assert [r.value for r in records] == [b"small", b"after"]
    assert Spool(tmp_path).stats().corrupt_tails == 0


def test_an_unwritable_folder_raises_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DeliveryError, match="cannot spool 1 undeliverable"):
        Spool(blocker / "spool").append(_records(1))
