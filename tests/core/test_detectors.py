"""Detector backends on what the repository ships: the bundled SSD person detector on the bundled sample
and the clips in tests/data, and a generated model with the Ultralytics YOLO export interface.

The same code on the full clips and a real YOLOv8 export: test_detectors_shared.py (extras)."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

from tests.conftest import SSD_MODEL_PATH, TESTDATA, YoloFactory
from tests.core.conftest import SSD_MODEL, SSD_SHA256, YOLO_SHA256, OnnxFactory
from vvctl.core.detectors import Detection, Detector, _nms, load_detector
from vvctl.core.errors import DependencyError, ExitCode, InputError, IntegrityError
from vvctl.core.video import FrameSampler

CPU = ["CPUExecutionProvider"]
Box = tuple[float, float, float, float]
Frames = dict[int, NDArray[np.uint8]]
BACKGROUND = 100  # scores under 0.15 for both classes of the tiny YOLO model

requires_no_gpu = pytest.mark.skipif(
    Path("/proc/driver/nvidia").exists(), reason="a GPU is present: the CUDA provider would really start"
)


def iou(a: Box, b: Box) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def best_iou(box: Box, others: Sequence[Box]) -> float:
    return max((iou(box, other) for other in others), default=0.0)


def assert_same(got: Sequence[Sequence[Detection]], want: Sequence[Sequence[Detection]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert [(d.label, d.class_id) for d in g] == [(d.label, d.class_id) for d in w]
        np.testing.assert_allclose([d.box for d in g], [d.box for d in w], atol=1e-3)
        np.testing.assert_allclose([d.confidence for d in g], [d.confidence for d in w], atol=1e-5)


def sampled_images(path: Path, interval_s: float) -> list[NDArray[np.uint8]]:
    with FrameSampler(path, interval_s) as sampler:
        return [frame.image for frame in sampler]


def union(detections: Sequence[Detection]) -> Box:
    boxes = np.array([d.box for d in detections])
    return (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())


@pytest.fixture(scope="session")
def ssd() -> Detector:
    return load_detector(SSD_MODEL_PATH, sha256=SSD_SHA256, providers=CPU, batch_size=4)


@pytest.fixture(scope="session")
def yolo(tiny_yolo: YoloFactory) -> Detector:
    return load_detector(tiny_yolo(), sha256=None, providers=CPU)


# -- the bundled SSD person detector ---------------------------------------------------------------


def test_ssd_model_info(ssd: Detector) -> None:
    info = ssd.info
    assert (info.name, info.sha256, info.format) == (SSD_MODEL, SSD_SHA256, "ssd")
    assert info.labels == {1: "person"}
    assert info.provider == "CPUExecutionProvider"
    assert info.fallback_reason is None
    assert info.batch_capable is True  # symbolic batch dimension
    assert info.input_size is None  # any frame size


def test_ssd_finds_the_pedestrians_on_the_walkway(ssd: Detector, walkway_frames: Frames) -> None:
    results = ssd.detect([walkway_frames[i] for i in (0, 50, 99)])
    # Frame 0 is vtest.avi frame 100, where SOURCES.md counts 4 persons above 0.5; measured on the
    # bundled re-encode: 4, 3 and 7.
    assert [len(r) for r in results] == [4, 3, 7]
    for frame_detections in results:
        for d in frame_detections:
            assert (d.label, d.class_id) == ("person", 1)
            assert d.confidence >= 0.5
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576
            # Upright pedestrians seen from above and afar: taller than wide, tens of pixels tall.
            assert y2 - y1 > x2 - x1
            assert 40 < y2 - y1 < 250


def test_ssd_person_on_every_sample_of_the_people_clip(ssd: Detector) -> None:
    results = ssd.detect(sampled_images(TESTDATA / "people.avi", 1.0))
    assert len(results) == 5
    assert all(results)


def test_ssd_no_person_on_the_cars_clip(ssd: Detector) -> None:
    results = ssd.detect(sampled_images(TESTDATA / "cars.mp4", 0.5))
    assert len(results) == 10  # 63 frames at 12.5 fps: 0 s to 4.5 s
    assert [r for r in results if r] == []


def test_ssd_pre_resize_matches_the_full_frame(ssd: Detector, walkway_frames: Frames) -> None:
    """Feeding the graph a frame already at its internal size gives the boxes it finds on the full frame."""
    session = ort.InferenceSession(str(SSD_MODEL_PATH), providers=CPU)
    for image in walkway_frames.values():
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


def test_ssd_batch_equals_one_at_a_time(ssd: Detector, walkway_frames: Frames) -> None:
    single = load_detector(SSD_MODEL_PATH, sha256=None, providers=CPU, batch_size=1)
    # Mixed frame sizes (768x576, 320x240 and 320x180) and a count that is not a multiple of the batch size.
    frames = [
        *walkway_frames.values(),
        *sampled_images(TESTDATA / "people.avi", 2.0)[:2],
        *sampled_images(TESTDATA / "cars.mp4", 2.0)[:2],
    ]
    assert len(frames) == 7
    batched = ssd.detect(frames)
    assert_same(batched, [single.detect([frame])[0] for frame in frames])
    assert sum(len(r) for r in batched) >= 14


# -- the Ultralytics YOLO interface (a generated model whose answers the test knows) ---------------


def scene(height: int, width: int, white: Box, black: Box | None = None) -> NDArray[np.uint8]:
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    x1, y1, x2, y2 = (round(v) for v in white)
    image[y1:y2, x1:x2] = 255
    if black is not None:
        x1, y1, x2, y2 = (round(v) for v in black)
        image[y1:y2, x1:x2] = 0
    return image


def test_yolo_model_info(yolo: Detector) -> None:
    info = yolo.info
    assert (info.name, info.format) == ("tiny-yolo.onnx", "yolo")
    assert info.labels == {0: "Normal", 1: "Fall"}  # from the export's metadata
    assert info.input_size == (320, 320)
    assert info.batch_capable is False  # exported with a fixed batch of 1


@pytest.mark.parametrize(
    ("height", "width"),
    [(576, 768), (180, 320), (640, 360), (320, 320), (1080, 1920), (97, 211)],
    ids=["4:3", "16:9-small", "portrait", "square-native", "1080p", "odd"],
)
def test_yolo_letterbox_boxes_map_back_to_frame_pixels(yolo: Detector, height: int, width: int) -> None:
    """A white and a black square are found where they are in the frame, whatever its shape.

    The model sees a letterboxed 320x320 copy, in 16 px cells: one cell is 16 / r frame pixels (r the
    letterbox scale). Boxes left in letterbox coordinates, or mapped back without removing the padding,
    miss by the padding (tens of cells for a wide frame) or the scale.
    """
    side = 0.35 * min(height, width)
    white = (0.1 * width, 0.1 * height, 0.1 * width + side, 0.1 * height + side)
    black = (0.9 * width - side, 0.9 * height - side, 0.9 * width, 0.9 * height)
    found = yolo.detect([scene(height, width, white, black)])[0]
    cell = 16 / min(320 / height, 320 / width)
    for label, square in (("Normal", white), ("Fall", black)):
        boxes = [d for d in found if d.label == label]
        assert boxes, f"no {label} box"
        got = union(boxes)
        for edge in range(4):
            assert abs(got[edge] - square[edge]) <= cell + 1, (label, got, square, cell)
        for d in boxes:
            cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
            assert square[0] - cell / 2 <= cx <= square[2] + cell / 2
            assert square[1] - cell / 2 <= cy <= square[3] + cell / 2
    for d in found:
        assert 0 <= d.box[0] <= d.box[2] <= width and 0 <= d.box[1] <= d.box[3] <= height


def test_yolo_padding_and_background_are_not_detections(yolo: Detector) -> None:
    assert yolo.detect([np.full((200, 800, 3), BACKGROUND, np.uint8), np.full((50, 50, 3), 114, np.uint8)]) == [
        [],
        [],
    ]


def test_yolo_nms_removes_duplicates_within_a_class_only(tiny_yolo: YoloFactory) -> None:
    """48 px boxes on 16 px cells: horizontal and vertical neighbours overlap with IoU 0.5."""
    path = tiny_yolo(box=48, name="overlapping.onnx")
    kept_detector = load_detector(path, sha256=None, providers=CPU)
    raw_detector = load_detector(path, sha256=None, providers=CPU, nms_iou=1.0)
    # Two squares side by side: boxes of different classes overlap along the seam.
    frame = scene(320, 320, (64, 64, 160, 160), (144, 64, 240, 160))  # cells 4-8 white, 9-14 black
    raw = raw_detector.detect([frame])[0]
    kept = kept_detector.detect([frame])[0]
    # Every score is 1.0 here: greedy NMS keeps every other cell of each row.
    assert len(raw) >= 2 * len(kept) > 0
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            assert a.class_id != b.class_id or iou(a.box, b.box) <= 0.45
    # Every box NMS dropped overlaps a kept box of its own class by more than the threshold.
    kept_boxes = {(d.class_id, d.box) for d in kept}
    for d in raw:
        if (d.class_id, d.box) not in kept_boxes:
            assert best_iou(d.box, [k.box for k in kept if k.class_id == d.class_id]) > 0.45
    # Across classes nothing is suppressed: a Normal and a Fall box overlap by more than the threshold.
    normal = [d.box for d in kept if d.label == "Normal"]
    assert any(best_iou(d.box, normal) > 0.45 for d in kept if d.label == "Fall")


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 20], [1, 0, 11, 20], [30, 30, 40, 50], [0, 1, 10, 21]], dtype=np.float32)
    scores = np.array([0.6, 0.9, 0.7, 0.5], dtype=np.float32)
    assert _nms(boxes, scores, 0.45) == [1, 2]
    assert _nms(boxes, scores, 0.95) == [1, 2, 0, 3]


def test_yolo_batch_equals_one_at_a_time(yolo: Detector) -> None:
    frames = [scene(240, 320, (20, 20, 120, 120)), scene(500, 300, (100, 200, 250, 350), (10, 10, 80, 80))]
    together = yolo.detect(frames)
    assert_same(together, [yolo.detect([frame])[0] for frame in frames])
    assert all(together)


# -- loading: pins, providers, bad files ---------------------------------------------------------------


@requires_no_gpu
def test_gpu_provider_falling_back_to_cpu_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vvctl.detectors"):
        detector = load_detector(
            SSD_MODEL_PATH, sha256=SSD_SHA256, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
    info = detector.info
    assert info.provider == "CPUExecutionProvider"
    assert info.requested_providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert info.fallback_reason is not None
    assert info.fallback_reason.startswith("CUDAExecutionProvider requested but unavailable: ")
    assert info.fallback_reason.endswith("running on CPUExecutionProvider")
    assert [r.getMessage() for r in caplog.records] == [f"model {SSD_MODEL}: {info.fallback_reason}"]
    assert detector.detect([np.zeros((64, 64, 3), np.uint8)]) == [[]]


@requires_no_gpu
def test_gpu_provider_alone_never_ends_on_cpu() -> None:
    with pytest.raises(DependencyError) as caught:
        load_detector(SSD_MODEL_PATH, sha256=SSD_SHA256, providers=["CUDAExecutionProvider"])
    assert caught.value.exit_code == ExitCode.DEPENDENCY
    assert "CUDAExecutionProvider requested but unavailable" in caught.value.message
    assert "no requested execution provider can run it" in caught.value.message


def test_provider_unknown_to_this_build() -> None:
    detector = load_detector(SSD_MODEL_PATH, sha256=None, providers=["NoSuchExecutionProvider", *CPU])
    assert detector.info.provider == "CPUExecutionProvider"
    assert detector.info.fallback_reason == (
        "NoSuchExecutionProvider requested but unavailable: not available in this onnxruntime build; "
        "running on CPUExecutionProvider"
    )
    with pytest.raises(DependencyError, match="none of the requested execution providers"):
        load_detector(SSD_MODEL_PATH, sha256=None, providers=["NoSuchExecutionProvider"])


def test_sha256_mismatch_refuses_to_load() -> None:
    with pytest.raises(IntegrityError) as caught:
        load_detector(SSD_MODEL_PATH, sha256=YOLO_SHA256, providers=CPU)
    assert caught.value.exit_code == ExitCode.INTEGRITY == 5
    assert SSD_SHA256 in caught.value.message and YOLO_SHA256 in caught.value.message


def test_sha256_pin_is_case_and_space_tolerant() -> None:
    detector = load_detector(SSD_MODEL_PATH, sha256=f" {SSD_SHA256.upper()}\n", providers=CPU)
    assert detector.info.sha256 == SSD_SHA256


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    data = bytearray(SSD_MODEL_PATH.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights
    path = tmp_path / SSD_MODEL
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        load_detector(path, sha256=SSD_SHA256, providers=CPU)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a model\n", random.Random(2).randbytes(4096)],
    ids=["empty", "text", "random"],
)
def test_non_onnx_file_is_a_clear_input_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    for providers in (CPU, ["CUDAExecutionProvider", *CPU]):
        with pytest.raises(InputError) as caught:
            load_detector(path, sha256=None, providers=providers)
        assert caught.value.exit_code == ExitCode.INPUT
        assert "model.onnx is not a loadable ONNX model" in caught.value.message


def test_missing_model_file(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.onnx", tmp_path):
        with pytest.raises(DependencyError):
            load_detector(path, sha256=None, providers=CPU)


def test_model_with_neither_interface(identity_onnx: OnnxFactory) -> None:
    path = identity_onnx()
    with pytest.raises(InputError, match="unrecognised detector interface"):
        load_detector(path, sha256=None, providers=CPU)


def test_forced_kind_must_match_the_model(tiny_yolo: YoloFactory) -> None:
    with pytest.raises(InputError, match="does not have the SSD detector interface"):
        load_detector(tiny_yolo(), sha256=None, kind="ssd", providers=CPU)
    with pytest.raises(InputError, match="does not have the Ultralytics YOLO interface"):
        load_detector(SSD_MODEL_PATH, sha256=None, kind="yolo", providers=CPU)


def test_malformed_names_metadata(identity_onnx: OnnxFactory) -> None:
    path = identity_onnx(metadata={"names": "['person', 'car']"})
    with pytest.raises(InputError, match="metadata 'names'"):
        load_detector(path, sha256=None, providers=CPU)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "rcnn"},
        {"score_threshold": 1.5},
        {"nms_iou": 0.0},
        {"batch_size": 0},
        {"intra_op_threads": 0},
        {"providers": []},
    ],
)
def test_load_detector_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        load_detector(SSD_MODEL_PATH, sha256=None, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
    ],
    ids=["float", "gray", "bgra", "empty"],
)
def test_detect_rejects_frames_that_are_not_bgr_images(ssd: Detector, frame: NDArray[np.generic]) -> None:
    with pytest.raises(ValueError, match="frames"):
        ssd.detect([frame])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("confidence", "class_id", "box"),
    [(1.2, 0, (0, 0, 1, 1)), (0.5, -1, (0, 0, 1, 1)), (0.5, 0, (2, 0, 1, 1)), (0.5, 0, (0, 0, float("nan"), 1))],
)
def test_detection_validates(confidence: float, class_id: int, box: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError):
        Detection(label="x", class_id=class_id, confidence=confidence, box=box)
