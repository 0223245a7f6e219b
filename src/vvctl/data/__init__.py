"""Assets shipped inside the package: the default detection model and a sample clip."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_NAME = "person-ssdlite-mobilenetv2.onnx"
DEFAULT_MODEL_SHA256 = "2d6c317190960c2ab14fed0ad9790cd1da9888efd8335d5c8e5185cf1a54f779"
SAMPLE_CLIP_NAME = "people-walkway.mp4"

_HERE = Path(__file__).resolve().parent


def bundled_model() -> Path:
    return _HERE / "models" / DEFAULT_MODEL_NAME


def bundled_sample_clip() -> Path:
    return _HERE / "samples" / SAMPLE_CLIP_NAME
