"""Recorder folders, camera and wall-clock time, presence intervals, snapshots, day reports, playlists and
signed outputs, on the clips shipped in the repository."""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline.conftest import Box, check_outputs, load
from vvctl.core.timeutil import parse_rfc3339
from vvctl.pipeline.identity import container_creation_time

INTERVAL_S = 0.5


def place(box: Box, source: Path, relative: str) -> Path:
    target = box.layout.input / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def outputs_of(box: Box, relative: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The analytic and summary documents of the video archived at ``processed/<relative>``."""
    folder = str(Path(relative).parent)
    stem = Path(relative).stem
    [analytic] = (box.root / "analytic" / folder).glob(f"{stem}.*.analytic.json")
    [summary] = (box.root / "summaries" / folder).glob(f"{stem}.*.summary.json")
    return load(analytic), load(summary)


@pytest.fixture
def recorder_box(make_box: Callable[..., Box], clips: dict[str, Path]) -> Box:
    """Three cameras, two days, both naming styles, and two different videos both named 143000.mp4."""
    box = make_box(sample_interval_s=INTERVAL_S, source_timezone="Europe/Berlin")
    place(box, clips["walkway"], "cam1/2026-12-01/143000.mp4")
    place(box, clips["cars"], "cam2/2026-12-02/143000.mp4")
    place(box, clips["people"], "CAM3_20261202_101500.avi")
    # Not videos to analyse, each for its reason.
    place(box, clips["cars"], "cam2/2026-12-02/.143500.mp4.tmp1234")
    place(box, clips["cars"], "cam2/2026-12-02/143500.mp4.part")
    place(box, clips["cars"], "cam2/2026-12-02/143500.mp4~")
    place(box, clips["cars"], ".sync/hidden.mp4")
    (box.layout.input / "cam1" / "README.txt").write_text("recorder notes\n")
    (box.layout.input / "cam9.mp4").symlink_to(clips["cars"])
    return box


def test_a_nested_recorder_tree_is_analysed_in_one_run_with_camera_and_wall_clock_time(recorder_box: Box) -> None:
    box = recorder_box
    report = box.run()

    assert report.counts["done"] == 3, report.videos
    assert report.skipped == {"hidden": 2, "not_video": 1, "symlink": 1, "temporary": 2}
    # The tree is mirrored, and two 143000.mp4 from two cameras are both kept under their own folders.
    processed = sorted(p.relative_to(box.layout.processed).as_posix() for p in box.files("processed"))
    assert processed == ["CAM3_20261202_101500.avi", "cam1/2026-12-01/143000.mp4", "cam2/2026-12-02/143000.mp4"]
    assert (box.layout.processed / "cam1/2026-12-01/143000.mp4").read_bytes() != (
        box.layout.processed / "cam2/2026-12-02/143000.mp4"
    ).read_bytes()

    # Wall-clock times from the path, in the recorder's zone (Berlin is UTC+1 in December).
    expected = {
        "cam1/2026-12-01/143000.mp4": ("cam1", "2026-12-01T13:30:00Z"),
        "cam2/2026-12-02/143000.mp4": ("cam2", "2026-12-02T13:30:00Z"),
        "CAM3_20261202_101500.avi": ("CAM3", "2026-12-02T09:15:00Z"),
    }
    for relative, (camera, start) in expected.items():
        analytic, summary = outputs_of(box, relative)
        source = analytic["source"]
        assert (source["camera"], source["start_at"], source["time_source"]) == (camera, start, "path")
        assert source["path"] == f"processed/{relative}"  # where it is after the move, relative to the root
        assert (box.root / source["path"]).is_file()
        assert summary["source"]["camera"] == camera and summary["source"]["start_at"] == start
        begin = parse_rfc3339(start)
        for detection in analytic["detections"]:
            assert parse_rfc3339(detection["at"]) == begin + timedelta(seconds=detection["t"])
        for stats in summary["labels"].values():
            for interval in stats["intervals"]:
                assert parse_rfc3339(interval["start_at"]) == begin + timedelta(seconds=interval["start_s"])

    # The LogLine names the archived file relative to the storage root, and binds every output by hash.
    records = [load(p) for p in sorted((box.root / "loglines" / "videos").glob("*.logline.json"))]
    paths = sorted(r["source"]["path"] for r in records)
    assert paths == [f"processed/{p}" for p in sorted(expected, key=lambda p: f"processed/{p}")]
    for record in records:
        kinds = {Path(o["path"]).parts[0] for o in record["outputs"]}
        assert {"analytic", "summaries"} <= kinds

    # One day index per calendar day in the recorder's zone; camera filters answer "who was on cam X".
    day1 = load(box.root / "reports" / "2026-12-01.json")
    day2 = load(box.root / "reports" / "2026-12-02.json")
    assert sorted(v["camera"] for v in day1["videos"]) == ["cam1"]
    assert sorted(v["camera"] for v in day2["videos"]) == ["CAM3", "cam2"]
    people_cam3 = [i for i in day2["intervals"] if i["camera"] == "CAM3" and i["label"] == "person"]
    assert people_cam3 and people_cam3[0]["start_at"].startswith("2026-12-02T09:15")
    assert sorted(report.reports) == [
        box.root / "reports" / "2026-12-01.html",
        box.root / "reports" / "2026-12-02.html",
    ]
    check_outputs(box)

    status = box.cli("status")
    assert status.exit_code == 0
    assert "skipped in input/: 2 hidden, 1 not_video, 1 symlink, 2 temporary" in status.stdout
    assert json.loads(box.cli("--json", "status").stdout)["skipped"]["temporary"] == 2


def test_folders_deeper_than_the_limit_are_counted_not_analysed(
    make_box: Callable[..., Box], clips: dict[str, Path]
) -> None:
    box = make_box(input_max_depth=1)
    place(box, clips["cars"], "site/cars.mp4")
    place(box, clips["people"], "site/cam1/people.avi")
    report = box.run()
    assert [v.name for v in report.videos] == ["cars.mp4"]
    assert report.skipped == {"too_deep": 1}
    assert (box.layout.input / "site/cam1/people.avi").is_file()
    assert report.backlog == 0  # only what would be analysed is backlog; the rest is counted as skipped


def _with_creation_time(source: Path, target: Path, moment: datetime) -> None:
    """A copy of an MP4 whose ``mvhd`` creation_time says ``moment`` (version 0: seconds since 1904)."""
    data = bytearray(source.read_bytes())
    at = data.index(b"mvhd")
    assert data[at + 4] == 0, "the test clip has a version 0 mvhd"
    seconds = int((moment - datetime(1904, 1, 1, tzinfo=UTC)).total_seconds())
    data[at + 8 : at + 12] = struct.pack(">I", seconds)
    target.write_bytes(bytes(data))


def test_time_falls_back_to_the_container_then_the_mtime(make_box: Callable[..., Box], clips: dict[str, Path]) -> None:
    box = make_box()
    created = datetime(2026, 11, 30, 22, 5, 7, tzinfo=UTC)
    (box.layout.input / "gate").mkdir()
    _with_creation_time(clips["cars"], box.layout.input / "gate" / "clip.mp4", created)
    assert container_creation_time(box.layout.input / "gate" / "clip.mp4") == created
    other = place(box, clips["people"], "people.avi")
    os.utime(other, (1_796_000_000, 1_796_000_000))
    box.run()
    analytic, _ = outputs_of(box, "gate/clip.mp4")
    assert analytic["source"]["camera"] == "gate"  # the first folder under input/
    assert (analytic["source"]["start_at"], analytic["source"]["time_source"]) == ("2026-11-30T22:05:07Z", "container")
    analytic, _ = outputs_of(box, "people.avi")
    assert analytic["source"]["time_source"] == "mtime"
    assert analytic["source"]["start_at"] == "2026-11-30T00:53:20Z"  # 1_796_000_000 in UTC
    assert analytic["source"]["camera"] == "input"


def test_a_bad_path_pattern_or_time_zone_is_a_config_error(
    make_box: Callable[..., Box], clips: dict[str, Path]
) -> None:
    box = make_box(source_path_patterns=["{camera}/{time:%H%M%S}"])
    result = box.cli("orchestrate")
    assert result.exit_code == 3 and "needs a {date:FORMAT}" in result.stderr
    box.configure(source_path_patterns=["{camera}_{date:%Y%m%d}"], source_timezone="Mars/Olympus")
    result = box.cli("orchestrate")
    assert result.exit_code == 3 and "Mars/Olympus" in result.stderr
    assert "Traceback" not in result.stderr


# -- presence intervals against hand-counted ones --------------------------------------------------------


def _frames(path: Path) -> list[Any]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def gaps_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s at 10 fps from the shipped people clip with empty (grey) stretches cut in: people at 0-2 s,
    5-6 s and 6.5-8 s, nobody at 2-5 s and 6-6.5 s (counted by hand from the frames written)."""
    import cv2
    import numpy as np

    people = _frames(Path(__file__).parents[1] / "data" / "people.avi")
    grey = np.full_like(people[0], 128)
    timeline = people[0:20] + [grey] * 30 + people[20:30] + [grey] * 5 + people[30:45]
    target = tmp_path_factory.mktemp("gaps") / "gaps.avi"
    height, width = grey.shape[:2]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    for frame in timeline:
        writer.write(frame)
    writer.release()
    return target


HAND_COUNTED = {
    0.0: [(0.0, 2.0), (5.0, 6.0), (6.5, 8.0)],  # gap 0: the 0.5 s without anyone splits 5-8 s in two
    2.0: [(0.0, 2.0), (5.0, 8.0)],  # a gap of 2 s merges across 6-6.5 s but not across 2-5 s
}


@pytest.mark.parametrize("gap", sorted(HAND_COUNTED))
def test_presence_intervals_match_hand_counted_ones_within_one_sampling_interval(
    make_box: Callable[..., Box], gaps_clip: Path, gap: float
) -> None:
    box = make_box(sample_interval_s=INTERVAL_S, presence_gap_s=gap)
    place(box, gaps_clip, "door/2026-12-01/080000.avi")
    box.run()
    _, summary = outputs_of(box, "door/2026-12-01/080000.avi")
    found = [(i["start_s"], i["end_s"]) for i in summary["labels"]["person"]["intervals"]]
    expected = HAND_COUNTED[gap]
    assert len(found) == len(expected), found
    for (start, end), (want_start, want_end) in zip(found, expected, strict=True):
        assert abs(start - want_start) <= INTERVAL_S and abs(end - want_end) <= INTERVAL_S, (found, expected)
    for interval in summary["labels"]["person"]["intervals"]:
        assert interval["peak_count"] >= 1
        assert interval["start_at"].startswith("2026-12-01T08:")


def test_presence_on_the_shipped_people_clip_is_its_whole_length(
    make_box: Callable[..., Box], clips: dict[str, Path]
) -> None:
    """Hand-counted from the frames of tests/data/people.avi: several people walk through all 4.5 s."""
    box = make_box(sample_interval_s=INTERVAL_S)
    place(box, clips["people"], "people.avi")
    box.run()
    _, summary = outputs_of(box, "people.avi")
    [interval] = summary["labels"]["person"]["intervals"]
    assert interval["start_s"] <= INTERVAL_S and abs(interval["end_s"] - 4.5) <= INTERVAL_S
    assert interval["peak_count"] >= 2


# -- snapshots, report, playlist ---------------------------------------------------------------------------


def test_snapshots_report_and_playlist_are_produced(
    make_box: Callable[..., Box], gaps_clip: Path, clips: dict[str, Path]
) -> None:
    import cv2

    box = make_box(sample_interval_s=INTERVAL_S, presence_gap_s=0.0, snapshots_per_video=2)
    place(box, gaps_clip, "door/2026-12-01/080000.avi")
    place(box, clips["cars"], "yard/2026-12-01/090000.mp4")
    box.run()
    _, summary = outputs_of(box, "door/2026-12-01/080000.avi")
    snaps = summary["snapshots"]
    assert len(snaps) == 2  # three intervals, limited to two: the longest ones
    for snap in snaps:
        image = cv2.imread(str(box.root / snap["path"]))
        assert image is not None and image.shape[1] == 320
        assert snap["label"] == "person" and snap["count"] >= 1
    assert {round(s["t"]) for s in snaps} <= {0, 1, 2, 5, 6, 7, 8}  # peak frames inside the intervals

    page = (box.root / "reports" / "2026-12-01.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 2  # self-contained: snapshots inlined
    assert "http://" not in page and "https://" not in page
    assert 'data-camera="door"' in page and 'data-camera="yard"' in page
    playlist = (box.root / "playlists" / "2026-12-01.m3u8").read_text().splitlines()
    assert playlist[0] == "#EXTM3U"
    assert "../processed/door/2026-12-01/080000.avi" in playlist  # people_present
    assert "../processed/yard/2026-12-01/090000.mp4" not in playlist  # quiet: cars only
    offset = playlist[playlist.index("../processed/door/2026-12-01/080000.avi") - 1]
    assert offset.startswith("#EXTVLCOPT:start-time=")

    # vvctl report --date rebuilds a deleted report; --camera/--label answer "people on camera X today".
    (box.root / "reports" / "2026-12-01.html").unlink()
    result = box.cli("--json", "report", "--date", "2026-12-01", "--camera", "door", "--label", "person")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert len(document["intervals"]) == 3 and {i["camera"] for i in document["intervals"]} == {"door"}
    assert (box.root / "reports" / "2026-12-01.html").read_text().count("<section") == 2
    assert box.cli("report", "--date", "2026-13-45").exit_code == 2


def test_no_snapshots_and_no_report_when_disabled(make_box: Callable[..., Box], clips: dict[str, Path]) -> None:
    box = make_box(snapshots_per_video=0, daily_report=False)
    place(box, clips["people"], "cam/2026-12-01/100000.avi")
    report = box.run()
    assert report.reports == []
    assert box.files("snapshots") == [] and box.files("reports") == []
    _, summary = outputs_of(box, "cam/2026-12-01/100000.avi")
    assert "snapshots" not in summary


def test_an_empty_day_playlist_plays_the_fallback_clip(make_box: Callable[..., Box], clips: dict[str, Path]) -> None:
    box = make_box()
    place(box, clips["cars"], "yard/2026-12-03/090000.mp4")
    box.run()
    playlist = (box.root / "playlists" / "2026-12-03.m3u8").read_text()
    assert "../fallback/people-walkway.mp4" in playlist
    assert (box.root / "fallback" / "people-walkway.mp4").is_file()


# -- signed outputs ----------------------------------------------------------------------------------------


def test_verify_logline_names_an_altered_summary_and_a_deleted_snapshot(
    make_box: Callable[..., Box], clips: dict[str, Path]
) -> None:
    box = make_box(sample_interval_s=INTERVAL_S)
    place(box, clips["people"], "cam1/2026-12-01/143000.avi")
    place(box, clips["walkway"], "cam2/2026-12-01/143000.mp4")
    box.run()
    assert box.cli("verify-logline", str(box.root / "loglines")).exit_code == 0
    [summary_path] = (box.root / "summaries" / "cam1" / "2026-12-01").glob("*.summary.json")
    data = bytearray(summary_path.read_bytes())
    data[data.index(b"people_present")] = ord("P")  # one byte
    summary_path.write_bytes(bytes(data))
    _, other = outputs_of(box, "cam2/2026-12-01/143000.mp4")
    snapshot = other["snapshots"][0]["path"]
    (box.root / snapshot).unlink()

    result = box.cli("--json", "verify-logline", str(box.root / "loglines"))
    assert result.exit_code == 1
    invalid = {r["reason"]: r["detail"] for r in json.loads(result.stdout)["results"] if r["verdict"] == "INVALID"}
    assert set(invalid) == {"output_altered", "output_missing"}
    assert summary_path.relative_to(box.root).as_posix() in invalid["output_altered"]
    assert f"{snapshot}: missing" in invalid["output_missing"]
    human = box.cli("verify-logline", str(box.root / "loglines"))
    assert "output_altered" in human.stdout and snapshot in human.stdout  # never cut in a table
    # The records alone are still intact.
    assert box.cli("verify-logline", "--records-only", str(box.root / "loglines")).exit_code == 0


def test_cleanup_retention_covers_snapshots_and_reports(make_box: Callable[..., Box], clips: dict[str, Path]) -> None:
    from vvctl.ops.cleanup import cleanup

    box = make_box(retention_days={"snapshots": 7, "reports": 30})
    place(box, clips["people"], "cam1/2026-12-01/100000.avi")
    box.run()
    [snapshot] = box.files("snapshots")
    report_files = box.files("reports")
    assert report_files
    old = datetime.now(UTC).timestamp() - 10 * 86400
    os.utime(snapshot, (old, old))
    result = cleanup(box.settings())
    assert not snapshot.exists()  # 10 days old, past retention_days.snapshots
    assert all(p.exists() for p in report_files)  # younger than retention_days.reports
    assert result.exit_code == 0


def test_the_day_index_a_run_updates_equals_a_full_rebuild(
    make_box: Callable[..., Box], clips: dict[str, Path]
) -> None:
    box = make_box(sample_interval_s=INTERVAL_S)
    place(box, clips["people"], "cam1/2026-12-01/100000.avi")
    box.run()
    place(box, clips["walkway"], "cam2/2026-12-01/110000.mp4")
    box.run()  # adds to the index the first run wrote, without reading every summary again
    box.configure(sample_interval_s=1.0)
    box.run(reprocess=True)  # replaces both videos' entries
    updated = load(box.root / "reports" / "2026-12-01.json")
    (box.root / "reports" / "2026-12-01.json").unlink()
    assert box.cli("report", "--date", "2026-12-01").exit_code == 0
    rebuilt = load(box.root / "reports" / "2026-12-01.json")
    for document in (updated, rebuilt):
        del document["generated_at"]
    assert updated == rebuilt
    assert [v["camera"] for v in updated["videos"]] == ["cam1", "cam2"]
    assert {i["camera"] for i in updated["intervals"]} == {"cam1", "cam2"}
