"""``orchestrate`` on real clips: what the summaries say, every output valid, and each video analysed once."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TESTDATA
from tests.pipeline.conftest import Box, check_chain, check_outputs, every_video_once, load, sha256
from vvctl.core.hardware import has_gpu
from vvctl.pipeline.orchestrate import Outcome


def test_real_clips_are_summarised_truthfully(make_box: Callable[..., Box]) -> None:
    videos = TESTDATA
    box = make_box(sample_interval_s=1.0)
    for name in ("people.avi", "cars.mp4"):
        box.drop(videos / name)
    report = box.run()

    assert report.counts["done"] == 2 and report.job_status == "ok"
    by_name = {v.name: v for v in report.videos}
    people = load(by_name["people.avi"].summary)  # type: ignore[arg-type]
    assert people["status"] == "people_present"
    assert people["labels"]["person"]["presence_ratio"] > 0.8  # pedestrians all through the 4.5 s
    assert people["labels"]["person"]["peak_simultaneous"] >= 3
    assert people["source"]["sha256"] == sha256(videos / "people.avi")
    cars = load(by_name["cars.mp4"].summary)  # type: ignore[arg-type]
    assert cars["status"] != "people_present"
    assert "person" not in cars["labels"]

    analytic = load(by_name["people.avi"].analytic)  # type: ignore[arg-type]
    assert analytic["source"]["frames_decoded"] == 45
    assert analytic["sampling"]["frames_sampled"] == 5  # 0 s, 1 s, ..., 4 s
    assert analytic["model"]["provider"] == report.model.provider  # type: ignore[union-attr]
    every_video_once(box, {"people.avi", "cars.mp4"})
    assert (box.root / "processed" / "people.avi").read_bytes() == (videos / "people.avi").read_bytes()
    ok_records = [r for r in check_chain(box.root / "loglines" / "videos") if r["status"] == "ok"]
    assert sorted(r["source"]["sha256"] for r in ok_records) == sorted(
        sha256(videos / n) for n in ("people.avi", "cars.mp4")
    )
    check_outputs(box)


def test_second_run_processes_nothing(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["people"])
    first = box.run()
    assert first.counts["done"] == 1
    outputs = {p: p.stat().st_mtime_ns for p in box.files("analytic") + box.files("summaries")}
    videos_log = len(box.files("loglines/videos", "*.logline.json"))

    second = box.run()

    assert second.videos == [] and second.job_status == "ok" and second.model is None  # the model is not even loaded
    assert {p: p.stat().st_mtime_ns for p in box.files("analytic") + box.files("summaries")} == outputs
    assert len(box.files("loglines/videos", "*.logline.json")) == videos_log


def test_a_renamed_copy_of_a_done_video_is_not_analysed_again(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["people"], "morning.avi")
    box.run()
    analytics = box.files("analytic")
    box.drop(box.root / "processed" / "morning.avi", "copy-of-morning.avi")

    report = box.run()

    [result] = report.videos
    assert result.outcome is Outcome.DUPLICATE and result.name == "copy-of-morning.avi"
    assert box.files("analytic") == analytics
    assert sorted(box.videos_in("processed")) == ["copy-of-morning.avi", "morning.avi"]
    skipped = load(result.logline)  # type: ignore[arg-type]
    assert skipped["status"] == "skipped" and "morning.avi" in skipped["this"]
    check_outputs(box)


def test_a_file_still_being_written_is_left_for_the_next_run(box: Box, clips: dict[str, Path]) -> None:
    box.configure(settle_s=30)
    fresh = box.drop(clips["cars"])
    old = box.drop(clips["people"])
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))

    report = box.run()

    assert [v.name for v in report.videos] == ["people.avi"]
    assert report.waiting == 1 and report.backlog == 1
    assert fresh.exists()
    os.utime(fresh, (an_hour_ago, an_hour_ago))  # the upload finished long ago
    assert [v.outcome for v in box.run().videos] == [Outcome.DONE]
    every_video_once(box, {"people.avi", "cars.mp4"})


def test_reprocess_analyses_done_videos_again_after_a_config_change(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["people"])
    box.run()
    [analytic] = box.files("analytic")
    assert load(analytic)["sampling"]["interval_s"] == 2.0

    box.configure(sample_interval_s=3.0)
    assert box.run().videos == []  # a new config alone does not redo anything

    report = box.run(reprocess=True)

    [result] = report.videos
    assert result.outcome is Outcome.DONE and result.destination == box.root / "processed" / "people.avi"
    redone = load(analytic)
    assert redone["sampling"]["interval_s"] == 3.0 and redone["sampling"]["frames_sampled"] == 2  # 0 s, 3 s
    assert box.videos_in("processed") == ["people.avi"]
    assert box.run(reprocess=True).videos == []  # up to date now
    check_outputs(box)


def test_gpu_request_that_ends_on_cpu_is_reported_loudly(box: Box, clips: dict[str, Path]) -> None:
    box.configure(providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    box.drop(clips["cars"])
    result = box.cli("--json", "orchestrate")

    report = json.loads(result.stdout)
    model = report["model"]
    analytic = load(Path(report["videos"][0]["analytic"]))
    gpu_requested = any(
        p in model["requested_providers"] for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    )
    fell_back = gpu_requested and model["provider"] == "CPUExecutionProvider"
    assert gpu_requested  # the default provider list asks for a GPU
    assert model["gpu_fallback"] is fell_back
    assert analytic["model"]["gpu_fallback"] is fell_back
    assert analytic["model"]["provider"] == model["provider"]
    alarm = fell_back and model["gpu_present"] is True  # a GPU is there, yet inference ended on CPU
    assert model["gpu_present"] is has_gpu()
    assert ("vvctl: WARNING: GPU inference was requested" in result.stderr) is alarm
    assert bool(report["warnings"]) is alarm
    assert result.exit_code == 0


@pytest.mark.parametrize("gpu_here", [True, False])
def test_gpu_fallback_alarms_only_when_the_machine_has_a_gpu(
    box: Box, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch, gpu_here: bool
) -> None:
    # The CUDA provider cannot start on the test machines (no GPU or no CUDA libraries): it falls back.
    monkeypatch.setattr("vvctl.pipeline.orchestrate.has_gpu", lambda: gpu_here)
    box.configure(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    box.drop(clips["cars"])
    report = box.run()
    assert report.model is not None
    if report.model.provider != "CPUExecutionProvider":
        pytest.skip("CUDA really runs here: nothing falls back")
    assert report.model.gpu_fallback is True
    if gpu_here:
        assert report.warnings == [report.model.warning] and "GPU inference was requested" in report.warnings[0]
        assert report.model.note is None
    else:
        assert report.warnings == [] and report.model.warning is None
        assert (
            report.model.note == "no GPU on this machine: person-ssdlite-mobilenetv2.onnx runs on CPUExecutionProvider"
        )


def test_cpu_only_config_gives_no_gpu_warning(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["cars"])
    result = box.cli("--json", "orchestrate")

    report = json.loads(result.stdout)
    assert result.exit_code == 0
    assert report["model"]["provider"] == "CPUExecutionProvider" and report["model"]["gpu_fallback"] is False
    assert report["warnings"] == [] and "WARNING" not in result.stderr


def test_processed_video_with_a_taken_name_is_not_overwritten(box: Box, clips: dict[str, Path]) -> None:
    box.drop(clips["people"], "cam1.avi")
    box.run()
    box.drop(clips["cars"], "cam1.avi")  # same name, different content (a DVR reusing file names)

    [result] = box.run().videos

    assert result.outcome is Outcome.DONE
    assert result.destination is not None and result.destination.name == f"cam1.{sha256(clips['cars'])[:8]}.avi"
    assert (box.root / "processed" / "cam1.avi").read_bytes() == clips["people"].read_bytes()
    assert result.destination.read_bytes() == clips["cars"].read_bytes()
    check_outputs(box)


def test_status_json_matches_the_storage_root(box: Box, clips: dict[str, Path], tmp_path: Path) -> None:
    box.configure(settle_s=30)
    an_hour_ago = time.time() - 3600
    for name in ("a.avi", "b.avi"):
        os.utime(box.drop(clips["people"] if name == "a.avi" else clips["cars"], name), (an_hour_ago,) * 2)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    os.utime(box.drop(junk), (an_hour_ago,) * 2)
    box.run()
    box.drop(clips["walkway"])  # fresh: still settling
    shutil.copyfile(clips["people"], box.root / "input" / "notes.txt")  # not a video extension

    result = box.cli("status", "--json")

    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["kind"] == "status"
    backlog = status["backlog"]
    assert (backlog["total"], backlog["ready"], backlog["settling"]) == (1, 0, 1)  # the fresh walkway clip
    assert 0 <= backlog["oldest_age_s"] < 60
    assert status["videos"] == {"pending": 0, "processing": 0, "done": 2, "failed": 0, "quarantined": 1}
    assert status["processed_files"] == len(box.videos_in("processed")) == 2
    assert status["quarantined_files"] == len(box.videos_in("corrupted")) == 1
    assert [q["name"] for q in status["quarantined"]] == ["junk.mp4"]
    assert status["quarantined"][0]["reason"] == "not_a_video"
    [run] = status["last_runs"]
    assert run["job"] == "orchestrate" and run["status"] == "warning" and run["finished_at"]
    # A warning run did its work: it is the job's last success (what the monitor's dead-man check reads).
    assert status["last_successes"]["orchestrate"]["id"] == run["id"]
    heads = {h["log"]: h["seq"] for h in status["chain_heads"]}
    assert heads["videos"] == len(box.files("loglines/videos", "*.logline.json")) == 3
    assert heads["jobs"] == len(box.files("loglines/jobs", "*.logline.json"))


def test_status_of_a_root_that_is_not_set_up_is_a_storage_error(tmp_path: Path) -> None:
    from tests.pipeline.conftest import Box

    empty = Box(tmp_path / "nothing", tmp_path / "c.toml", {"storage_root": str(tmp_path / "nothing")})
    empty.configure()
    result = empty.cli("status")
    assert result.exit_code == 6
    assert "run 'vvctl bootstrap' first" in result.stderr
