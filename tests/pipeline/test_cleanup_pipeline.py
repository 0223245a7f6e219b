"""Cleanup next to the video pipeline: removed videos stay known, and running beside orchestrate loses nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.pipeline.conftest import SAMPLE, Box, check_outputs, every_video_once
from vvctl.ops.cleanup import cleanup

DAY = 86_400


def age(path: Path, days: float) -> None:
    moment = time.time() - days * DAY
    os.utime(path, (moment, moment))


def test_a_video_removed_by_cleanup_comes_back_as_a_duplicate(box: Box) -> None:
    box.drop(SAMPLE, "walk.mp4")
    assert box.run().counts["done"] == 1
    archived = box.layout.processed / "walk.mp4"
    age(archived, 40)

    report = cleanup(box.settings()).report

    assert not archived.exists() and report.files >= 1
    box.drop(SAMPLE, "walk-again.mp4")
    again = box.run()
    assert again.counts["duplicate"] == 1 and again.counts["recovered"] == 0
    assert box.videos_in("processed") == ["walk-again.mp4"]


def test_a_video_lost_by_other_means_is_still_recovered(box: Box) -> None:
    """The control: only cleanup's mark turns "recover" into "duplicate"."""
    box.drop(SAMPLE, "walk.mp4")
    box.run()
    (box.layout.processed / "walk.mp4").unlink()
    box.drop(SAMPLE, "walk-again.mp4")
    assert box.run().counts["recovered"] == 1


def test_cleanup_while_orchestrate_runs_loses_no_video(box: Box) -> None:
    box.configure(retention_days={"processed": 1, "corrupted": 1, "analytic": 1, "summaries": 1, "logs": 1})
    layout = box.layout
    # Old files cleanup should remove meanwhile, and new videos it must never touch.
    old = [layout.processed / "old.mp4", layout.corrupted / "old.bin", layout.analytic / "old.bin"]
    for path in old:
        path.write_bytes(b"o" * 1000)
        age(path, 40)
    names = {"a.mp4", "b.mp4", "c.mp4", "broken-1.mp4", "broken-2.mp4", "d.mp4"}
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        box.drop(SAMPLE, name)  # one analysed, three duplicates
    for name in ("broken-1.mp4", "broken-2.mp4"):
        (layout.input / name).write_bytes(os.urandom(20_000))
    (layout.input / "stray.txt").write_bytes(b"not a video")
    age(layout.input / "stray.txt", 40)

    proc = box.spawn("orchestrate")
    passes = 0
    while proc.poll() is None or passes < 2:
        cleanup(box.settings())
        cleanup(box.settings(), dirs=["input"], days=0)  # as aggressive as it gets: every video must survive
        passes += 1
    _out, err = proc.communicate(timeout=300)

    assert proc.returncode == 1, err  # the broken files were quarantined
    every_video_once(box, names)
    assert not any(path.exists() for path in old)
    assert not (layout.input / "stray.txt").exists()
    check_outputs(box)
