"""Extras on the full test clips: ``orchestrate`` summarises the 79.5 s vtest.avi and the 30 s
car-detection.mp4 truthfully. The default suite does the same on the shipped cuts (test_orchestrate.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import require_shared_testdata
from tests.pipeline.conftest import Box, check_chain, check_outputs, every_video_once, load, sha256

require_shared_testdata()


def test_real_clips_are_summarised_truthfully(make_box: Callable[..., Box], videos: Path) -> None:
    box = make_box(sample_interval_s=1.0)
    for name in ("vtest.avi", "car-detection.mp4"):
        box.drop(videos / name)
    report = box.run()

    assert report.counts["done"] == 2 and report.job_status == "ok"
    by_name = {v.name: v for v in report.videos}
    people = load(by_name["vtest.avi"].summary)  # type: ignore[arg-type]
    assert people["status"] == "people_present"
    assert people["labels"]["person"]["presence_ratio"] > 0.8  # pedestrians from about 3 s to the end of 79.5 s
    assert people["labels"]["person"]["peak_simultaneous"] >= 3
    assert people["source"]["sha256"] == sha256(videos / "vtest.avi")
    cars = load(by_name["car-detection.mp4"].summary)  # type: ignore[arg-type]
    assert cars["status"] != "people_present"
    assert "person" not in cars["labels"]

    analytic = load(by_name["vtest.avi"].analytic)  # type: ignore[arg-type]
    assert analytic["source"]["frames_decoded"] == 795  # SOURCES.md: 795 frames decode
    assert analytic["sampling"]["frames_sampled"] == 80  # 0 s, 1 s, ..., 79 s
    assert analytic["model"]["provider"] == report.model.provider  # type: ignore[union-attr]
    every_video_once(box, {"vtest.avi", "car-detection.mp4"})
    assert (box.root / "processed" / "vtest.avi").read_bytes() == (videos / "vtest.avi").read_bytes()
    ok_records = [r for r in check_chain(box.root / "loglines" / "videos") if r["status"] == "ok"]
    assert sorted(r["source"]["sha256"] for r in ok_records) == sorted(
        sha256(videos / n) for n in ("vtest.avi", "car-detection.mp4")
    )
    check_outputs(box)
