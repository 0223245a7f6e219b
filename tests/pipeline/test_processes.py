"""Real ``vvctl orchestrate`` processes: SIGKILL at several points and a rerun, two runs at once, ``--watch``
with SIGTERM, and SIGTERM during a ``--once`` run."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pipeline.conftest import (
    Box,
    check_chain,
    check_outputs,
    every_video_once,
    load,
    lock_holder,
    processing,
    sha256,
    wait_for,
)

KILL_POINTS: dict[str, Callable[[Box], bool]] = {
    "while-analysing": processing,
    "first-analytic-written": lambda box: bool(box.files("analytic")),
    "first-summary-written": lambda box: bool(box.files("summaries")),
    "first-video-logline": lambda box: bool(box.files("loglines/videos", "*.logline.json")),
    "first-video-archived": lambda box: bool(box.videos_in("processed")),
    "second-video-archived": lambda box: len(box.videos_in("processed")) >= 2,
    "first-quarantine-record": lambda box: bool(box.files("corrupted", "*.error.json")),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_rerun_leaves_no_partial_output_and_no_lost_video(
    box: Box, clips: dict[str, Path], tmp_path: Path, point: str
) -> None:
    box.configure(sample_interval_s=0.5)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 4096)
    sources = [clips["people"], tmp_path / "broken.mp4", clips["cars"], clips["walkway"]]
    for source in sources:
        box.drop(source)
    names = {s.name for s in sources}
    shas = {sha256(s) for s in sources}

    proc = box.spawn("orchestrate")
    reached = wait_for(lambda: KILL_POINTS[point](box), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert reached, f"the run ended before {point}"
    assert proc.returncode == -signal.SIGKILL

    rerun = box.spawn("--json", "orchestrate")
    out, err = rerun.communicate(timeout=120)
    report = json.loads(out)
    # broken.mp4 is quarantined by the killed run or by this one; exit 1 says this run did it.
    assert rerun.returncode == (1 if report["counts"]["quarantined"] else 0), err
    assert "Traceback" not in err

    every_video_once(box, names)
    assert box.videos_in("corrupted") == ["broken.mp4"]
    check_outputs(box)
    analysed = [load(p)["source"]["sha256"] for p in box.files("analytic")]
    assert sorted(analysed) == sorted(shas - {sha256(tmp_path / "broken.mp4")})  # one analytic per video
    records = check_chain(box.root / "loglines" / "videos")
    assert {r["source"]["sha256"] for r in records if r["status"] == "ok"} == set(analysed)
    assert report["backlog"] == 0
    status = json.loads(box.cli("status", "--json").stdout)
    assert status["videos"] == {"pending": 0, "processing": 0, "done": 3, "failed": 0, "quarantined": 1}
    with sqlite3.connect(box.root / "state" / "vvctl.sqlite3") as conn:
        statuses = [row[0] for row in conn.execute("SELECT status FROM job_runs WHERE job = 'orchestrate' ORDER BY id")]
    assert statuses == ["killed", report["job_status"]]  # the killed run is recorded as such by the rerun


def test_a_video_that_kills_every_run_is_quarantined_after_max_attempts(box: Box, clips: dict[str, Path]) -> None:
    box.configure(max_attempts=2, sample_interval_s=0.2)
    box.drop(clips["people"])
    for attempt in (1, 2):
        proc = box.spawn("orchestrate")
        assert wait_for(lambda: processing(box, attempt), proc)  # noqa: B023 - used before the next loop
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)

    final = box.spawn("--json", "orchestrate")
    out, _ = final.communicate(timeout=120)

    assert final.returncode == 1
    [video] = json.loads(out)["videos"]
    assert video["outcome"] == "quarantined" and video["reason"] == "crashed" and video["attempts"] == 2
    assert load(box.root / "corrupted" / "people.avi.error.json")["reason"] == "crashed"
    every_video_once(box, {"people.avi"})
    check_outputs(box)


def test_a_second_run_exits_at_once_with_code_4(box: Box, long_clip: Path) -> None:
    box.configure(sample_interval_s=0.1)  # 900 frames: the first run stays busy
    box.drop(long_clip)
    first = box.spawn("orchestrate")
    try:
        assert wait_for(lambda: lock_holder(box) == str(first.pid) and processing(box), first)
        started = time.monotonic()
        second = subprocess.run(box.argv("orchestrate"), capture_output=True, text=True, timeout=60, check=False)
        elapsed = time.monotonic() - started
        assert first.poll() is None, "the first run ended before the second one started"
    finally:
        first.send_signal(signal.SIGTERM)
        _, first_err = first.communicate(timeout=60)

    assert second.returncode == 4
    assert second.stderr.strip() == (
        f"vvctl: error: another vvctl orchestrate is already running (pid {first.pid}); "
        "this one exits without doing anything"
    )
    assert elapsed < 10  # no waiting for the lock (process start-up included)
    # SIGTERM stopped the first run cleanly mid-video: exit 130, the video stays in input/ for the next run.
    assert first.returncode == 130, first_err
    assert box.videos_in("input") == ["long.avi"]
    assert box.files("analytic") == []
    check_outputs(box)
    status = json.loads(box.cli("status", "--json").stdout)
    assert status["videos"]["processing"] == 0 and status["videos"]["pending"] == 1
    assert status["last_runs"][0]["status"] == "interrupted"


def test_watch_processes_new_videos_and_stops_cleanly_on_sigterm(box: Box, clips: dict[str, Path]) -> None:
    watcher = box.spawn("--json", "orchestrate", "--watch", "--interval", "0.2")
    try:
        assert wait_for(lambda: lock_holder(box) == str(watcher.pid), watcher)
        box.drop(clips["cars"])
        assert wait_for(lambda: box.videos_in("processed") == ["cars.mp4"], watcher)
        box.drop(clips["people"])
        assert wait_for(lambda: "people.avi" in box.videos_in("processed"), watcher)
        assert watcher.poll() is None
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)

    assert watcher.returncode == 0, err
    report = json.loads(out)
    assert report["mode"] == "watch" and report["stopped"] is True and report["interrupted"] is False
    assert report["counts"]["done"] == 2 and report["passes"] >= 2
    every_video_once(box, {"cars.mp4", "people.avi"})
    check_outputs(box)
    jobs = [load(p) for p in box.files("loglines/jobs", "*.logline.json")]
    assert "watch stopped after" in jobs[-1]["this"]


def test_watch_stops_mid_video_and_the_next_run_finishes_it(box: Box, long_clip: Path) -> None:
    box.configure(sample_interval_s=0.1)
    box.drop(long_clip)
    watcher = box.spawn("--json", "orchestrate", "--watch")
    try:
        assert wait_for(lambda: processing(box), watcher)
    finally:
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=60)

    assert watcher.returncode == 0, err
    report = json.loads(out)
    assert report["interrupted"] is True and report["counts"]["interrupted"] == 1
    assert box.videos_in("input") == ["long.avi"]
    box.configure(sample_interval_s=5.0)
    assert box.run().counts["done"] == 1
    every_video_once(box, {"long.avi"})
    check_outputs(box)
