"""The coordinator's dispatch/commit logic against an in-process executor (threads, real model, no Ray):
commit order, duplicate hold-back, attempt counting, and a worker that dies mid-video."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pipeline.conftest import Box, check_outputs, every_video_once
from tests.pipeline.distributed_helpers import drop_in_order, same_results, story
from vvctl.core.errors import ConfigError
from vvctl.pipeline.distributed import (
    AnalysisRequest,
    AnalysisSpec,
    InProcessExecutor,
    Worker,
    WorkerLost,
    WorkerResult,
    executor_for,
)
from vvctl.pipeline.orchestrate import Outcome, analysis_config_hash
from vvctl.pipeline.scan import ScanParams


def spec_for(box: Box) -> AnalysisSpec:
    settings = box.settings()
    params = ScanParams(
        interval_s=settings.sample_interval_s,
        batch_size=settings.batch_size,
        score_threshold=settings.score_threshold,
        nms_iou=settings.nms_iou,
        config_hash=analysis_config_hash(settings),
    )
    return AnalysisSpec.from_settings(settings, params)


class Recording(InProcessExecutor):
    """Records what was in flight together; ``fault(name, attempt)`` may make a worker die or stall."""

    def __init__(self, spec: AnalysisSpec, fault: Callable[[str, int], str | None] | None = None) -> None:
        super().__init__(spec, workers=2)
        self.fault = fault
        self.attempts: dict[str, int] = {}
        self.in_flight: list[str] = []
        self.overlaps: list[tuple[str, ...]] = []
        self.guard = threading.Lock()

    def run(self, worker: Worker, request: AnalysisRequest) -> WorkerResult:
        name = request.path.name
        with self.guard:
            self.attempts[name] = self.attempts.get(name, 0) + 1
            self.in_flight.append(request.sha256)
            self.overlaps.append(tuple(self.in_flight))
            attempt = self.attempts[name]
        try:
            action = self.fault(name, attempt) if self.fault else None
            if action == "slow":
                time.sleep(1.5)
            if action == "die":
                time.sleep(0.2)  # mid-video
                raise WorkerLost("the worker died or failed (ActorDiedError: killed)")
            return super().run(worker, request)
        finally:
            with self.guard:
                self.in_flight.remove(request.sha256)


CLIPS = ("people.avi", "cars.mp4", "walkway.mp4")


def files(clips: dict[str, Path]) -> list[tuple[Path, str]]:
    return [(clips["people"], "people.avi"), (clips["cars"], "cars.mp4"), (clips["walkway"], "walkway.mp4")]


def test_outputs_and_logline_order_match_the_local_run_even_when_the_first_video_is_slowest(
    make_box: Callable[..., Box], clips: dict[str, Path]
) -> None:
    local, remote = make_box("local"), make_box("remote")
    for box in (local, remote):
        drop_in_order(box, files(clips))
    local.run()
    executor = Recording(spec_for(remote), fault=lambda name, _: "slow" if name == "people.avi" else None)
    report = remote.run(executor=executor)

    assert report.counts["done"] == 3 and report.job_status == "ok"
    assert any(len(o) == 2 for o in executor.overlaps), "two videos were never analysed at once"
    # people.avi finished last, yet it is committed (and signed) first, as discovery found it.
    assert [r.name for r in report.videos] == list(CLIPS)
    assert [s[2].split(":")[0] for s in story(remote)] == [s[2].split(":")[0] for s in story(local)]
    same_results(local, remote, check=check_outputs)
    assert report.model is not None and report.model.provider == "CPUExecutionProvider"


def test_two_copies_of_one_content_are_never_in_flight_together(box: Box, clips: dict[str, Path]) -> None:
    drop_in_order(box, [(clips["people"], "a.avi"), (clips["people"], "b.avi"), (clips["cars"], "c.mp4")])
    executor = Recording(spec_for(box))
    report = box.run(executor=executor)

    assert all(len(set(o)) == len(o) for o in executor.overlaps), executor.overlaps
    assert executor.attempts == {"a.avi": 1, "c.mp4": 1}  # the copy was held back, then archived
    assert [(r.name, r.outcome) for r in report.videos] == [
        ("a.avi", Outcome.DONE),
        ("b.avi", Outcome.DUPLICATE),
        ("c.mp4", Outcome.DONE),
    ]
    assert [s[:2] for s in story(box)] == [
        ("analysed a video", "ok"),
        ("skipped a duplicate video", "skipped"),
        ("analysed a video", "ok"),
    ]
    check_outputs(box)


def test_a_worker_that_dies_mid_video_costs_one_counted_attempt_and_the_video_is_redone(
    box: Box, clips: dict[str, Path]
) -> None:
    drop_in_order(box, files(clips))
    executor = Recording(
        spec_for(box), fault=lambda name, attempt: "die" if (name, attempt) == ("cars.mp4", 1) else None
    )
    report = box.run(executor=executor)

    assert executor.attempts["cars.mp4"] == 2
    cars = [r for r in report.videos if r.name == "cars.mp4"]
    assert [(r.outcome, r.attempts) for r in cars] == [(Outcome.FAILED, 1), (Outcome.DONE, 2)]
    assert cars[0].reason == "crashed"
    did = [s[:2] for s in story(box)]
    assert did.count(("analysed a video", "ok")) == 3  # exactly one ok record per video
    assert ("gave up an analysis attempt", "failed") in did
    every_video_once(box, set(CLIPS))
    check_outputs(box)


def test_a_video_that_kills_its_worker_every_time_is_quarantined_crashed(
    make_box: Callable[..., Box], clips: dict[str, Path]
) -> None:
    box = make_box(max_attempts=2)
    drop_in_order(box, files(clips))
    executor = Recording(spec_for(box), fault=lambda name, _: "die" if name == "cars.mp4" else None)
    report = box.run(executor=executor)

    assert executor.attempts["cars.mp4"] == 2
    final = [r for r in report.videos if r.name == "cars.mp4"][-1]
    assert (final.outcome, final.reason, final.attempts) == (Outcome.QUARANTINED, "crashed", 2)
    assert report.counts["done"] == 2
    assert box.videos_in("corrupted") == ["cars.mp4"]
    check_outputs(box)


def test_a_worker_that_sees_other_content_stops_the_run_without_counting_the_attempt(
    box: Box, clips: dict[str, Path]
) -> None:
    from vvctl.core.errors import StorageError

    drop_in_order(box, [(clips["people"], "people.avi")])
    spec = spec_for(box)
    wrong = AnalysisSpec(**{**spec.__dict__, "path_map": {str(box.layout.input): str(clips["walkway"].parent)}})
    with pytest.raises(StorageError, match="ray_path_map"):
        box.run(executor=InProcessExecutor(wrong, workers=1))
    assert box.videos_in("input") == ["people.avi"]  # not quarantined: never the video's fault
    import sqlite3

    with sqlite3.connect(box.root / "state" / "vvctl.sqlite3") as conn:
        assert conn.execute("SELECT attempts FROM videos").fetchone()[0] == 0


def test_path_map_replaces_the_longest_matching_prefix(box: Box) -> None:
    from vvctl.pipeline.distributed import _mapped

    spec = AnalysisSpec(**{**spec_for(box).__dict__, "path_map": {"/srv/vv": "/mnt/a", "/srv/vv/input": "/mnt/b"}})
    assert _mapped(spec, "/srv/vv/input/x.mp4") == Path("/mnt/b/x.mp4")
    assert _mapped(spec, "/srv/vv/models/m.onnx") == Path("/mnt/a/models/m.onnx")
    assert _mapped(spec, "/srv/vvx/y.mp4") == Path("/srv/vvx/y.mp4")


def test_the_local_executor_is_no_executor_and_ray_needs_an_address(box: Box, clips: dict[str, Path]) -> None:
    assert executor_for(box.settings(), spec_for(box).params) is None
    pytest.importorskip("ray", reason="the ray extra is not installed")
    box.configure(executor="ray")
    drop_in_order(box, [(clips["cars"], "cars.mp4")])
    with pytest.raises(ConfigError, match="ray_address"):
        box.run()
    assert box.videos_in("input") == ["cars.mp4"]


def test_an_unauthenticated_cluster_is_refused_unless_allowed(box: Box, clips: dict[str, Path]) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from vvctl.pipeline.ray_executor import RayExecutor

    executor = RayExecutor(spec_for(box), address="10.0.0.1:6379", env={})
    with pytest.raises(ConfigError, match="RAY_AUTH_MODE=token"):
        executor.connect()


def test_the_default_run_never_imports_ray(box: Box, clips: dict[str, Path]) -> None:
    import subprocess
    import sys

    drop_in_order(box, [(clips["cars"], "cars.mp4")])
    code = (
        "import sys; from vvctl.cli.app import main; sys.argv=['vvctl','--config',sys.argv[1],'orchestrate'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'ray' not in sys.modules, 'ray imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(box.config)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert box.videos_in("processed") == ["cars.mp4"]
