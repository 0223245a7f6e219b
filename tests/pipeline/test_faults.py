"""Bad files, slow files and a full disk, made from real clips: quarantined with a reason, retried, or
stopped cleanly, and never lost."""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from tests.conftest import TESTDATA
from tests.pipeline.conftest import Box, check_outputs, every_video_once, load, sha256
from vvctl.core import atomic
from vvctl.core.errors import StorageError
from vvctl.pipeline.orchestrate import Outcome


def _zero_byte(tmp: Path, videos: Path) -> Path:
    path = tmp / "zero.mp4"
    path.write_bytes(b"")
    return path


def _truncated(tmp: Path, videos: Path) -> Path:
    data = (videos / "cars.mp4").read_bytes()
    path = tmp / "truncated.mp4"
    path.write_bytes(data[: len(data) * 2 // 5])  # cut off at 40%: the index is gone with the tail
    return path


def _truncated_avi(tmp: Path, videos: Path) -> Path:
    data = (videos / "people.avi").read_bytes()
    path = tmp / "truncated.avi"
    path.write_bytes(data[: len(data) * 2 // 5])
    return path


def _random_bytes(tmp: Path, videos: Path) -> Path:
    path = tmp / "random.mp4"
    path.write_bytes(np.random.default_rng(7).bytes(200_000))
    return path


def _text(tmp: Path, videos: Path) -> Path:
    path = tmp / "notes.avi"
    path.write_text("camera 3 offline between 02:00 and 02:15\n" * 50, encoding="utf-8")
    return path


def _mid_stream_corrupt(tmp: Path, videos: Path) -> Path:
    data = bytearray((videos / "cars.mp4").read_bytes())
    middle, block = len(data) // 2, len(data) // 4
    data[middle : middle + block] = np.random.default_rng(11).bytes(block)  # the header is intact
    path = tmp / "corrupt-middle.mp4"
    path.write_bytes(bytes(data))
    return path


def _no_frames(tmp: Path, videos: Path) -> Path:
    import cv2

    path = tmp / "no-frames.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    writer.release()  # a valid AVI header and index with zero frames in it
    assert path.stat().st_size > 0
    return path


def _unknown_codec(tmp: Path, videos: Path) -> Path:
    import cv2

    source = tmp / "mjpeg.avi"
    cap = cv2.VideoCapture(str(videos / "people.avi"))
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for _ in range(20):
        ok, frame = cap.read()
        assert ok
        writer.write(frame)
    writer.release()
    cap.release()
    data = source.read_bytes()
    assert data.count(b"MJPG") == 2  # the stream header's handler and the bitmap header's compression
    path = tmp / "unknown-codec.avi"
    path.write_bytes(data.replace(b"MJPG", b"QQQQ"))  # a FourCC no decoder claims
    return path


FAULTS: list[tuple[Callable[[Path, Path], Path], set[str]]] = [
    (_zero_byte, {"empty_file"}),
    (_truncated, {"truncated"}),
    (_truncated_avi, {"truncated"}),
    (_random_bytes, {"not_a_video"}),
    (_text, {"not_a_video"}),
    # Damage in the middle of a complete file: decoding stops early although every byte is there.
    (_mid_stream_corrupt, {"corrupt_stream"}),
    (_no_frames, {"no_frames"}),
    (_unknown_codec, {"unsupported_codec"}),
]


@pytest.mark.parametrize(("make", "reasons"), FAULTS, ids=[f.__name__.strip("_") for f, _ in FAULTS])
def test_bad_file_is_quarantined_with_its_reason_and_the_run_goes_on(
    box: Box,
    clips: dict[str, Path],
    tmp_path: Path,
    make: Callable[[Path, Path], Path],
    reasons: set[str],
) -> None:
    bad = box.drop(make(tmp_path, TESTDATA))
    original = bad.read_bytes()
    bad_sha = sha256(bad)
    box.drop(clips["cars"], "zz-good.mp4")  # listed after the bad file (same mtime: by name)

    report = box.run()

    outcomes = {v.name: v for v in report.videos}
    assert [v.name for v in report.videos] == [bad.name, "zz-good.mp4"]
    assert outcomes["zz-good.mp4"].outcome is Outcome.DONE
    result = outcomes[bad.name]
    assert result.outcome is Outcome.QUARANTINED and result.reason in reasons, result
    moved = box.root / "corrupted" / bad.name
    assert moved.read_bytes() == original
    record = load(moved.with_name(bad.name + ".error.json"))
    assert record["reason"] == result.reason and record["attempts"] == 1
    assert record["video"]["sha256"] == bad_sha and record["message"]
    logline = load(result.logline)  # type: ignore[arg-type]
    assert logline["status"] == "quarantined" and logline["source"]["sha256"] == bad_sha
    assert report.job_status == "warning"
    every_video_once(box, {bad.name, "zz-good.mp4"})
    check_outputs(box)
    assert box.run().videos == []  # quarantine is final: nothing left to retry


def test_a_copy_of_a_quarantined_file_is_quarantined_without_a_new_analysis(box: Box, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01" * 5000)
    box.drop(junk)
    box.run()
    box.drop(junk, "junk-again.mp4")

    [result] = box.run().videos

    assert result.outcome is Outcome.QUARANTINED and result.reason == "not_a_video"
    record = load(box.root / "corrupted" / "junk-again.mp4.error.json")
    assert record["duplicate_of"] == "junk.mp4"
    check_outputs(box)


def test_cli_exit_code_is_1_when_a_video_was_quarantined(box: Box, clips: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    box.drop(tmp_path / "empty.mp4")
    box.drop(clips["cars"])

    result = box.cli("--json", "orchestrate")

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["quarantined"] == 1 and report["counts"]["done"] == 1
    assert box.cli("orchestrate").exit_code == 0  # the next run has nothing to complain about


def test_too_slow_video_fails_its_attempts_then_is_quarantined(box: Box, clips: dict[str, Path]) -> None:
    box.configure(max_video_seconds=0.001, max_attempts=2, sample_interval_s=0.2)
    video = box.drop(clips["people"])
    sha = sha256(video)

    [first] = box.run().videos
    assert first.outcome is Outcome.FAILED and first.reason == "timeout" and first.attempts == 1
    assert video.exists() and box.files("analytic") == []
    failed = json.loads(box.cli("status", "--json").stdout)
    assert failed["videos"]["failed"] == 1 and failed["backlog"]["total"] == 1
    assert failed["failed"][0]["attempts"] == 1

    [second] = box.run().videos
    assert second.outcome is Outcome.QUARANTINED and second.reason == "timeout" and second.attempts == 2
    record = load(box.root / "corrupted" / "people.avi.error.json")
    assert record["reason"] == "timeout" and record["attempts"] == 2 and record["video"]["sha256"] == sha
    statuses = [load(p)["status"] for p in box.files("loglines/videos", "*.logline.json")]
    assert statuses == ["failed", "quarantined"]
    every_video_once(box, {"people.avi"})
    check_outputs(box)


@contextlib.contextmanager
def _disk_fills_at(monkeypatch: pytest.MonkeyPatch, nth: int) -> Iterator[list[Path]]:
    """Every atomic write goes through ``atomic_open``; the ``nth`` one fails with ENOSPC mid-write,
    after its temp file exists, exactly as a full disk makes ``write()``/``fsync()`` fail."""
    real = atomic.atomic_open
    seen: list[Path] = []

    @contextlib.contextmanager
    def flaky(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
        seen.append(Path(path))
        with real(path, mode) as fh:
            if len(seen) == nth:
                fh.write(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
            yield fh

    monkeypatch.setattr(atomic, "atomic_open", flaky)
    yield seen
    monkeypatch.undo()


@pytest.mark.parametrize("nth", [1, 2, 3, 4, 5, 7, 9, 10, 12])
def test_disk_full_stops_the_run_cleanly_and_loses_nothing(
    box: Box, clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    names = {"people.avi", "cars.mp4", "empty.mp4"}
    box.drop(clips["people"])
    box.drop(clips["cars"])
    box.drop(tmp_path / "empty.mp4")

    with _disk_fills_at(monkeypatch, nth) as writes:
        result = box.cli("orchestrate")
    assert len(writes) >= nth, "the fault was never injected"
    assert result.exit_code == 6, result.output
    assert result.stderr.splitlines()[-1].startswith("vvctl: error: disk full while writing")
    assert "Traceback" not in result.output
    leftovers = [p for p in box.root.rglob(".vvtmp-*")]
    assert leftovers == []
    everywhere = box.videos_in("input") + box.videos_in("processed") + box.videos_in("corrupted")
    assert sorted(everywhere) == sorted(names)  # nothing lost, nothing doubled
    [stopped] = json.loads(box.cli("status", "--json").stdout)["last_runs"]
    assert stopped["status"] == "failed" and "disk full" in stopped["summary"]  # the run says why it stopped

    again = box.cli("orchestrate")
    assert again.exit_code in (0, 1), again.output
    every_video_once(box, names)
    assert box.videos_in("corrupted") == ["empty.mp4"]
    check_outputs(box)
    status = json.loads(box.cli("status", "--json").stdout)
    assert status["videos"]["done"] == 2 and status["videos"]["quarantined"] == 1
    assert status["videos"]["processing"] == 0


def test_disk_full_is_a_storage_error_from_the_library(
    box: Box, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    box.drop(clips["cars"])
    with _disk_fills_at(monkeypatch, 1), pytest.raises(StorageError, match="disk full"):
        box.run()
    [run] = json.loads(box.cli("status", "--json").stdout)["last_runs"]
    assert run["status"] == "failed" and "disk full" in run["summary"]
    assert box.run().counts["done"] == 1


def test_a_video_that_hits_an_internal_error_every_time_is_quarantined_after_max_attempts(
    box: Box, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vvctl.pipeline import orchestrate as module

    def broken_scan(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug the file triggers")

    box.configure(max_attempts=2)
    box.drop(clips["people"])
    with monkeypatch.context() as patch:
        patch.setattr(module, "scan_video", broken_scan)
        for attempt in (1, 2):
            result = box.cli("orchestrate")
            assert result.exit_code == 70
            assert result.stderr.splitlines()[-1] == (
                "vvctl: error: internal error (RuntimeError); run again with --verbose for the traceback"
            )
            failed = json.loads(box.cli("status", "--json").stdout)["failed"]
            assert [(f["name"], f["attempts"]) for f in failed] == [("people.avi", attempt)]

        result = box.cli("--json", "orchestrate")  # the bug is still there, but the video is not retried

    assert result.exit_code == 1
    [video] = json.loads(result.stdout)["videos"]
    assert video["outcome"] == "quarantined" and video["reason"] == "crashed" and video["attempts"] == 2
    assert "RuntimeError" in load(box.root / "corrupted" / "people.avi.error.json")["message"]
    every_video_once(box, {"people.avi"})
    check_outputs(box)


def test_a_missing_key_store_stops_the_run_before_any_analysis(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["walkway"])
    (box.root / "state" / "keystore.json").unlink()
    result = box.cli("orchestrate")
    assert result.exit_code == 6
    assert "key store" in result.stderr and "does not exist" in result.stderr
    assert list((box.root / "analytic").iterdir()) == []  # nothing analysed that could not be signed
    assert box.videos_in("input") == [clips["walkway"].name]
