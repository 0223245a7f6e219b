"""Extras on the full test data: the bundled SSD person detector on the full vtest.avi and car-detection.mp4,
and a real Ultralytics YOLOv8 export (a third-party, AGPL test fixture that is not shipped). The default
suite covers the same code on the shipped clips and a generated YOLO-layout model (test_detectors.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

from tests.conftest import require_shared_testdata
from tests.core.conftest import SSD_MODEL, SSD_SHA256, YOLO_MODEL, YOLO_SHA256
from vvctl.core.detectors import Detection, Detector, load_detector
from vvctl.core.errors import InputError
from vvctl.core.video import FrameSampler

require_shared_testdata()

CPU = ["CPUExecutionProvider"]
Box = tuple[float, float, float, float]
Frames = dict[int, NDArray[np.uint8]]


def iou(a: Box, b: Box) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def best_iou(box: Box, others: Sequence[Box]) -> float:
    return max((iou(box, other) for other in others), default=0.0)


def shifted(detections: Sequence[Detection], dx: float, dy: float) -> list[Box]:
    return [(d.box[0] + dx, d.box[1] + dy, d.box[2] + dx, d.box[3] + dy) for d in detections]


def assert_same(got: Sequence[Sequence[Detection]], want: Sequence[Sequence[Detection]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert [(d.label, d.class_id) for d in g] == [(d.label, d.class_id) for d in w]
        np.testing.assert_allclose([d.box for d in g], [d.box for d in w], atol=1e-3)
        np.testing.assert_allclose([d.confidence for d in g], [d.confidence for d in w], atol=1e-5)


def sampled_images(path: Path, interval_s: float) -> list[NDArray[np.uint8]]:
    with FrameSampler(path, interval_s) as sampler:
        return [frame.image for frame in sampler]


@pytest.fixture(scope="session")
def ssd(models_dir: Path) -> Detector:
    return load_detector(models_dir / SSD_MODEL, sha256=SSD_SHA256, providers=CPU, batch_size=4)


@pytest.fixture(scope="session")
def yolo(models_dir: Path) -> Detector:
    return load_detector(models_dir / YOLO_MODEL, sha256=YOLO_SHA256, providers=CPU)


@pytest.fixture(scope="session")
def yolo_low(models_dir: Path) -> Detector:
    """The YOLO export with a low threshold: its scores cluster just above 0.5, so comparisons between
    two views of one scene look for the confident boxes of one among all plausible boxes of the other."""
    return load_detector(models_dir / YOLO_MODEL, sha256=None, providers=CPU, score_threshold=0.3)


@pytest.fixture(scope="session")
def yolo_on_vtest(yolo_low: Detector, vtest_frames: Frames) -> dict[int, list[Detection]]:
    return {index: yolo_low.detect([vtest_frames[index]])[0] for index in (300, 500)}


# -- the bundled SSD person detector ---------------------------------------------------------------


def test_ssd_model_info(ssd: Detector) -> None:
    info = ssd.info
    assert (info.name, info.sha256, info.format) == (SSD_MODEL, SSD_SHA256, "ssd")
    assert info.labels == {1: "person"}
    assert info.provider == "CPUExecutionProvider"
    assert info.fallback_reason is None
    assert info.batch_capable is True  # symbolic batch dimension
    assert info.input_size is None  # any frame size


def test_ssd_finds_the_pedestrians_on_vtest(ssd: Detector, vtest_frames: Frames) -> None:
    results = ssd.detect([vtest_frames[i] for i in (100, 300, 500)])
    # SOURCES.md: 4, 4 and 2 persons above 0.5 on frames 100, 300 and 500.
    assert [len(r) for r in results] == [4, 4, 2]
    for frame_detections in results:
        for d in frame_detections:
            assert (d.label, d.class_id) == ("person", 1)
            assert d.confidence >= 0.5
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576
            # Upright pedestrians seen from above and afar: taller than wide, tens of pixels tall.
            assert y2 - y1 > x2 - x1
            assert 40 < y2 - y1 < 250


def test_ssd_person_on_most_vtest_samples(ssd: Detector, videos_dir: Path) -> None:
    results = ssd.detect(sampled_images(videos_dir / "vtest.avi", 5.0))
    assert len(results) == 16
    assert sum(1 for r in results if r) >= 14


def test_ssd_no_person_on_car_detection(ssd: Detector, videos_dir: Path) -> None:
    results = ssd.detect(sampled_images(videos_dir / "car-detection.mp4", 1.0))
    assert len(results) == 31
    assert [r for r in results if r] == []


def test_ssd_pre_resize_matches_the_full_frame(ssd: Detector, models_dir: Path, vtest_frames: Frames) -> None:
    """Feeding the graph a frame already at its internal size gives the boxes it finds on the full frame."""
    session = ort.InferenceSession(str(models_dir / SSD_MODEL), providers=CPU)
    for image in vtest_frames.values():
        boxes, scores = session.run(["detection_boxes", "detection_scores"], {"image_tensor": image[None, :, :, ::-1]})
        height, width = image.shape[:2]
        full = [
            (float(x1 * width), float(y1 * height), float(x2 * width), float(y2 * height))
            for (y1, x1, y2, x2), score in zip(boxes[0], scores[0], strict=True)
            if score >= 0.6
        ]
        ours = [d.box for d in ssd.detect([image])[0]]
        assert full
        for box in full:
            assert best_iou(box, ours) > 0.9


def test_ssd_batch_equals_one_at_a_time(
    models_dir: Path, ssd: Detector, vtest_frames: Frames, videos_dir: Path
) -> None:
    single = load_detector(models_dir / SSD_MODEL, sha256=None, providers=CPU, batch_size=1)
    # Mixed frame sizes (768x576 and 768x432) and a count that is not a multiple of the batch size.
    frames = [*vtest_frames.values(), *sampled_images(videos_dir / "car-detection.mp4", 10.0)[:3]]
    assert len(frames) == 6
    batched = ssd.detect(frames)
    assert_same(batched, [single.detect([frame])[0] for frame in frames])
    assert sum(len(r) for r in batched) >= 10


# -- an Ultralytics YOLO export --------------------------------------------------------------------


def test_yolo_model_info(yolo: Detector) -> None:
    info = yolo.info
    assert (info.name, info.sha256, info.format) == (YOLO_MODEL, YOLO_SHA256, "yolo")
    assert info.labels == {0: "Normal", 1: "Fall"}  # from the export's metadata
    assert info.input_size == (640, 640)
    assert info.batch_capable is False  # exported with a fixed batch of 1


def test_yolo_boxes_land_on_the_people_ssd_finds(
    ssd: Detector, yolo_on_vtest: dict[int, list[Detection]], vtest_frames: Frames
) -> None:
    """Two independent models with different preprocessing (stretch vs letterbox) agree on where people are.

    A box left in letterbox coordinates would be off by 80 px of padding and a 1.2x scale: IoU about 0.
    """
    for index, found in yolo_on_vtest.items():
        assert {d.label for d in found} <= {"Normal", "Fall"}
        confident_ssd = [d for d in ssd.detect([vtest_frames[index]])[0] if d.confidence >= 0.8]
        assert confident_ssd
        for person in confident_ssd:
            assert best_iou(person.box, [d.box for d in found]) > 0.45


def test_yolo_letterbox_on_other_aspect_ratios(
    yolo_low: Detector, yolo_on_vtest: dict[int, list[Detection]], vtest_frames: Frames
) -> None:
    """The same scene in frames of other shapes gives the same boxes once mapped back to frame pixels."""
    image = vtest_frames[300]
    reference = [d for d in yolo_on_vtest[300] if d.confidence >= 0.5]
    assert len(reference) >= 3
    # Square, the scene at the top: nothing to pad, where the 4:3 frame gets 80 px top and bottom.
    square = np.full((768, 768, 3), 114, np.uint8)
    square[:576] = image
    # A wide strip (768x300): padded by 170 px top and bottom; mapped back by its own offset.
    strip = np.ascontiguousarray(image[100:400])
    square_found, strip_found = yolo_low.detect([square, strip])
    for person in reference:
        assert best_iou(person.box, [d.box for d in square_found]) > 0.9
        if person.box[1] >= 100 and person.box[3] <= 400:
            assert best_iou(person.box, shifted(strip_found, 0, 100)) > 0.9
    for d in strip_found:
        assert 0 <= d.box[1] <= d.box[3] <= 300


def test_yolo_nms_removes_duplicates(
    models_dir: Path, vtest_frames: Frames, yolo_on_vtest: dict[int, list[Detection]]
) -> None:
    no_suppression = load_detector(
        models_dir / YOLO_MODEL, sha256=None, providers=CPU, score_threshold=0.3, nms_iou=1.0
    )
    raw = no_suppression.detect([vtest_frames[300]])[0]
    kept = yolo_on_vtest[300]
    # Several anchors fire on each person; NMS keeps one box per person.
    assert len(raw) > 2 * len(kept)
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            assert a.class_id != b.class_id or iou(a.box, b.box) <= 0.45
    # Every raw box is near a kept one: NMS dropped duplicates, not people.
    assert all(best_iou(d.box, [k.box for k in kept]) > 0.45 for d in raw if d.confidence >= 0.5)


def test_yolo_batch_equals_one_at_a_time(yolo: Detector, vtest_frames: Frames) -> None:
    frames = [vtest_frames[300], vtest_frames[500]]
    together = yolo.detect(frames)
    assert_same(together, [yolo.detect([frame])[0] for frame in frames])
    assert all(together)


@pytest.mark.slow
def test_yolo_no_person_on_car_detection(yolo: Detector, videos_dir: Path) -> None:
    results = yolo.detect(sampled_images(videos_dir / "car-detection.mp4", 2.0))
    assert len(results) == 16
    assert [r for r in results if r] == []


def test_forced_kind_must_match_the_real_models(models_dir: Path) -> None:
    with pytest.raises(InputError, match="does not have the SSD detector interface"):
        load_detector(models_dir / YOLO_MODEL, sha256=None, kind="ssd", providers=CPU)
    with pytest.raises(InputError, match="does not have the Ultralytics YOLO interface"):
        load_detector(models_dir / SSD_MODEL, sha256=None, kind="yolo", providers=CPU)
