"""The ``orchestrate`` and ``status`` commands: options, output modes, exit codes, progress on a terminal."""

from __future__ import annotations

import io
import json
import random
import signal
import time
from pathlib import Path

import pytest
from rich.console import Console

from tests.pipeline.conftest import Box, check_outputs, every_video_once, wait_for
from vvctl.cli.orchestrate import _Live


def test_human_output_lists_each_video_and_a_summary(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["people"])
    result = box.cli("orchestrate")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("done        people.avi: people_present (3 frames,")
    assert lines[1].startswith("orchestrate ok: 1 done; 3 frames sampled at ")
    assert lines[2] == "0 video file(s) left in input/ (0 still settling)"


def test_quiet_prints_nothing(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["people"])
    result = box.cli("--quiet", "orchestrate")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""


def test_quiet_still_names_a_quarantined_file_on_stderr(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["people"])
    (box.root / "input" / "bad.mp4").write_bytes(b"not a video at all" * 100)
    result = box.cli("--quiet", "orchestrate")
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("vvctl: WARNING: quarantined bad.mp4 (")


def test_json_report_after_the_command_name(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["cars"])
    result = box.cli("orchestrate", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["kind"] == "orchestrate" and report["schema_version"] == 1
    assert report["mode"] == "once" and report["counts"]["done"] == 1 and report["job_status"] == "ok"
    assert Path(report["videos"][0]["destination"]) == box.root / "processed" / "cars.mp4"


def test_interval_without_watch_is_a_usage_error(box: Box) -> None:
    result = box.cli("orchestrate", "--interval", "5")
    assert result.exit_code == 2
    assert result.stderr.strip() == "vvctl: error: --interval applies to --watch only"


@pytest.mark.parametrize("args", [["--watch", "--interval", "0"], ["--settle", "-1"]])
def test_out_of_range_options_are_usage_errors(box: Box, args: list[str]) -> None:
    assert box.cli("orchestrate", *args).exit_code == 2


def test_storage_root_and_settle_flags_override_the_config(box: Box, clips: dict[str, Path]) -> None:
    box.configure(settle_s=3600, storage_root="/nonexistent/root")
    box.drop(clips["cars"])
    result = box.cli("orchestrate", "--storage-root", str(box.root), "--settle", "0")
    assert result.exit_code == 0, result.output
    assert box.videos_in("processed") == ["cars.mp4"]


def test_storage_root_not_set_up_is_exit_6(box: Box, tmp_path: Path) -> None:
    result = box.cli("orchestrate", "--storage-root", str(tmp_path / "elsewhere"))
    assert result.exit_code == 6
    assert "run 'vvctl bootstrap' first" in result.stderr


def test_progress_on_a_terminal_shows_frames_per_second_and_eta(box: Box, clips: dict[str, Path]) -> None:
    box.configure(
        sample_interval_s=0.5, providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    box.drop(clips["people"])
    box.drop(clips["walkway"])
    screen = io.StringIO()
    warnings: list[str] = []
    console = Console(file=screen, force_terminal=True, width=160, no_color=True)
    with _Live(lines=True, bars=True, console=console, warn=warnings.append) as live:
        report = box.run(on_progress=live)

    text = screen.getvalue()
    assert report.counts["done"] == 2
    assert "all videos" in text and "frames/s" in text and "ETA" in text
    assert "1/2 people.avi" in text and "2/2 people-walkway.mp4" in text
    assert "done        people-walkway.mp4: people_present" in text
    alarm = report.model.warning if report.model is not None else None
    assert warnings == ([alarm] if alarm else [])


@pytest.mark.slow
def test_sigkill_at_random_moments_many_times(box: Box, clips: dict[str, Path], long_clip: Path) -> None:
    box.configure(sample_interval_s=0.25, max_attempts=50)
    names = set()
    for source in (clips["people"], clips["cars"], clips["walkway"], long_clip):
        names.add(box.drop(source).name)
    rng = random.Random(4)
    for _ in range(12):
        proc = box.spawn("orchestrate")
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    final = box.spawn("orchestrate")
    final.communicate(timeout=300)
    assert final.returncode == 0
    every_video_once(box, names)
    check_outputs(box)
    assert len(box.files("analytic")) == len(names)


def test_status_human_output(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["people"])
    box.run()
    result = box.cli("status")
    assert result.exit_code == 0, result.output
    assert "backlog: 0 video file(s) in input/ (0 ready, 0 settling)" in result.stdout
    assert "videos: 1 done, 0 quarantined, 0 failed, 0 processing, 0 pending; 1 file(s) in processed/" in result.stdout
    assert "orchestrate" in result.stdout and "LogLine chain heads" in result.stdout


def test_watch_sees_a_file_that_settles_later(box: Box, clips: dict[str, Path]) -> None:
    box.configure(settle_s=1.0)
    watcher = box.spawn("--json", "orchestrate", "--watch", "--interval", "0.2")
    try:
        assert wait_for(lambda: (box.root / "state" / "orchestrate.lock").exists(), watcher)
        dropped = time.monotonic()
        box.drop(clips["cars"])
        assert wait_for(lambda: box.videos_in("processed") == ["cars.mp4"], watcher)
        assert time.monotonic() - dropped >= 1.0  # not before it settled
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert json.loads(out)["counts"]["done"] == 1
