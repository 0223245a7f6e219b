"""The per-video scan: parallel inference workers give exactly the sequential result, in order."""

from __future__ import annotations

import pytest

from tests.pipeline.conftest import SAMPLE
from vvctl.core.detectors import Detector, load_detector
from vvctl.data import DEFAULT_MODEL_SHA256, bundled_model
from vvctl.pipeline.scan import InferencePlan, ScanParams, ScanTimeout, inference_plan, scan_video


@pytest.fixture(scope="module")
def detector() -> Detector:
    return load_detector(
        bundled_model(), sha256=DEFAULT_MODEL_SHA256, providers=["CPUExecutionProvider"], intra_op_threads=1
    )


def params(workers: int, batch_size: int = 3) -> ScanParams:
    return ScanParams(
        interval_s=0.5, batch_size=batch_size, score_threshold=0.5, nms_iou=0.45, config_hash="x", workers=workers
    )


def test_parallel_workers_give_the_sequential_result_in_order(detector: Detector) -> None:
    one = scan_video(SAMPLE, sha256="0" * 64, detector=detector, params=params(1))
    three = scan_video(SAMPLE, sha256="0" * 64, detector=detector, params=params(3))
    assert one.frames_sampled == three.frames_sampled == 20  # 10 s every 0.5 s, a batch of 3 left over
    assert three.document["detections"] == one.document["detections"]
    assert three.document["samples"] == one.document["samples"]
    times = [s["t"] for s in three.document["samples"]]
    assert times == sorted(times)
    assert any(d["label"] == "person" for d in three.document["detections"])


def test_deadline_stops_a_parallel_scan_and_leaves_no_worker(detector: Detector) -> None:
    import threading
    import time

    with pytest.raises(ScanTimeout):
        scan_video(SAMPLE, sha256="0" * 64, detector=detector, params=params(2, 1), deadline=time.monotonic() + 0.05)
    assert not [t for t in threading.enumerate() if t.name.startswith("vvctl-infer")]


@pytest.mark.parametrize(
    ("cpus", "explicit", "expected"),
    [
        (1, None, InferencePlan(None, 1)),
        (2, None, InferencePlan(1, 2)),
        (8, None, InferencePlan(4, 2)),
        (8, 3, InferencePlan(3, 1)),  # an explicit thread count keeps one batch at a time
    ],
)
def test_inference_plan(cpus: int, explicit: int | None, expected: InferencePlan) -> None:
    assert inference_plan(cpus, intra_op_threads=explicit) == expected
