"""Fixtures for the inference-core tests: the shipped clips, the bundled model and sample, and (for the
``*_shared.py`` extras) the full clips and models in ``<repo>/../shared/testdata``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.conftest import MODELS, SAMPLE, VIDEOS

SSD_MODEL = "person-ssdlite-mobilenetv2.onnx"
SSD_SHA256 = "2d6c317190960c2ab14fed0ad9790cd1da9888efd8335d5c8e5185cf1a54f779"
YOLO_MODEL = "yolov8s-person-fall.onnx"
YOLO_SHA256 = "eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found: {path.resolve()}")
    return path


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    return _require(VIDEOS)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return _require(MODELS)


@pytest.fixture(scope="session")
def walkway_frames() -> dict[int, NDArray[np.uint8]]:
    """Frames 0, 50 and 99 of the bundled sample (vtest.avi frames 100, 150 and 199, 768x576)."""
    import cv2

    wanted = {0, 50, 99}
    frames: dict[int, NDArray[np.uint8]] = {}
    cap = cv2.VideoCapture(str(SAMPLE))
    try:
        for index in range(max(wanted) + 1):
            ok, image = cap.read()
            assert ok, f"{SAMPLE.name} ended at frame {index}"
            if index in wanted:
                frames[index] = image
    finally:
        cap.release()
    return frames


@pytest.fixture(scope="session")
def vtest_frames(videos_dir: Path) -> dict[int, NDArray[np.uint8]]:
    """vtest.avi frames 100, 300 and 500, decoded in order (no seeking), as SOURCES.md counted them."""
    import cv2

    wanted = {100, 300, 500}
    frames: dict[int, NDArray[np.uint8]] = {}
    cap = cv2.VideoCapture(str(videos_dir / "vtest.avi"))
    try:
        for index in range(max(wanted) + 1):
            ok, image = cap.read()
            assert ok, f"vtest.avi ended at frame {index}"
            if index in wanted:
                frames[index] = image
    finally:
        cap.release()
    return frames


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: int | str | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, elem_type: int, dims: Iterable[int | str]) -> bytes:
    shape = b"".join(_field(1, _field(1, d) if isinstance(d, int) else _field(2, d)) for d in dims)
    tensor_type = _field(1, elem_type) + _field(2, shape)
    return _field(1, name) + _field(2, _field(1, tensor_type))


OnnxFactory = Callable[..., Path]


@pytest.fixture
def identity_onnx(tmp_path: Path) -> OnnxFactory:
    """Write a one-node Identity ONNX model, hand-encoded (the ``onnx`` package is not a dependency).

    Neither detector interface matches it, which is the point: it exercises interface recognition
    and metadata parsing on a real, loadable model.
    """

    def make(
        *,
        elem_type: int = 1,
        dims: Iterable[int | str] = (1, 3, 8, 8),
        metadata: dict[str, str] | None = None,
        name: str = "identity.onnx",
    ) -> Path:
        dims = tuple(dims)
        node = _field(1, "x") + _field(2, "y") + _field(4, "Identity")
        graph = (
            _field(1, node)
            + _field(2, "g")
            + _field(11, _value_info("x", elem_type, dims))
            + _field(12, _value_info("y", elem_type, dims))
        )
        model = _field(1, 7) + _field(7, graph) + _field(8, _field(1, "") + _field(2, 13))
        for key, value in (metadata or {}).items():
            model += _field(14, _field(1, key) + _field(2, value))
        path = tmp_path / name
        path.write_bytes(model)
        return path

    return make
