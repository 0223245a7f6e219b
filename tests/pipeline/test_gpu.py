"""The GPU path end to end. Without a GPU only the first test runs: a configuration listing only GPU
providers still stops with exit 7 and the reason. The others need a GPU on which the TensorRT provider
really starts, and skip with the reason otherwise."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline.conftest import SAMPLE, Box, load
from vvctl.core.detectors import Detection, load_detector
from vvctl.core.errors import ExitCode
from vvctl.core.hardware import cuda_devices
from vvctl.core.providers import GpuOptions
from vvctl.core.video import FrameSampler
from vvctl.ops.doctor import doctor

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
# docs/gpu.md, "FP16 tolerance": what an fp16 engine may change compared with the CPU in fp32.
FP16_MIN_IOU = 0.85
FP16_MAX_SCORE_DELTA = 0.05


def run(box: Box, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(box.argv(*args), capture_output=True, text=True, check=False, timeout=1800)


def test_only_gpu_providers_without_a_gpu_exits_7_with_the_reason(make_box: Callable[..., Box]) -> None:
    found = cuda_devices()
    if not isinstance(found, str) and found:
        pytest.skip(f"a GPU is here ({found[0].name}): the GPU providers may start")
    box = make_box(providers=[TRT, CUDA])
    box.drop(SAMPLE)
    result = run(box, "orchestrate", "--once")
    assert result.returncode == ExitCode.DEPENDENCY, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("vvctl: error:")]
    assert "TensorrtExecutionProvider requested but unavailable" in line
    assert "CUDAExecutionProvider requested but unavailable" in line
    assert "cannot load lib" in line or "driver" in line  # the missing library by name, or the missing driver
    assert box.videos_in("input") == [SAMPLE.name]  # the video is not blamed


@pytest.fixture
def gpu_box(make_box: Callable[..., Box]) -> Box:
    box = make_box(providers=[TRT, CUDA, CPU], sample_interval_s=1.0)
    trt = doctor(box.settings()).providers[0]
    if not trt.starts:
        pytest.skip(f"the TensorRT provider cannot start here: {trt.reason}")
    return box


def analytic_model(box: Box, video: str) -> dict[str, Any]:
    (path,) = [p for p in box.files("analytic", "*.analytic.json") if p.name.startswith(Path(video).stem)]
    model: dict[str, Any] = load(path)["model"]
    return model


def test_second_run_loads_the_engine_at_least_10x_faster(gpu_box: Box, clips: dict[str, Path]) -> None:
    gpu_box.drop(SAMPLE)
    first = run(gpu_box, "orchestrate", "--once")
    assert first.returncode == 0, first.stderr
    assert "building the TensorRT engine" in first.stdout
    built = analytic_model(gpu_box, SAMPLE.name)
    assert built["provider"] == TRT and built["engine"]["state"] == "built"

    gpu_box.drop(clips["people"])
    second = run(gpu_box, "orchestrate", "--once")
    assert second.returncode == 0, second.stderr
    assert "building the TensorRT engine" not in second.stdout
    loaded = analytic_model(gpu_box, clips["people"].name)
    assert loaded["provider"] == TRT and loaded["engine"]["state"] == "loaded"
    assert loaded["precision"] == built["precision"]
    assert built["load_s"] >= 10 * loaded["load_s"], (built["load_s"], loaded["load_s"])
    print(json.dumps({"first_load_s": built["load_s"], "second_load_s": loaded["load_s"]}))


def unmatched(want: Sequence[Detection], got: Sequence[Detection], floor: float) -> list[Detection]:
    """Detections in ``want`` clearly above the threshold with no counterpart in ``got`` within tolerance."""
    missing = []
    for d in want:
        if d.confidence < floor:
            continue  # near the threshold either side may drop it
        if not any(
            g.class_id == d.class_id
            and _iou(g.box, d.box) >= FP16_MIN_IOU
            and abs(g.confidence - d.confidence) <= FP16_MAX_SCORE_DELTA
            for g in got
        ):
            missing.append(d)
    return missing


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_fp16_detections_match_the_cpu_within_tolerance(gpu_box: Box, clips: dict[str, Path]) -> None:
    settings = gpu_box.settings()
    gpu = GpuOptions(precision="fp16", engine_cache_dir=settings.engine_cache_path)
    threshold = settings.score_threshold
    on_gpu = load_detector(settings.model_path, sha256=settings.model_sha256, providers=[TRT, CUDA], gpu=gpu)
    on_cpu = load_detector(settings.model_path, sha256=settings.model_sha256, providers=[CPU])
    assert on_gpu.info.provider == TRT
    compared = 0
    for clip in (SAMPLE, clips["people"]):
        with FrameSampler(clip, 1.0) as sampler:
            frames = [f.image for f in sampler]
        for got, want in zip(on_gpu.detect(frames), on_cpu.detect(frames), strict=True):
            floor = threshold + FP16_MAX_SCORE_DELTA
            assert not unmatched(want, got, floor), "a CPU detection has no fp16 counterpart"
            assert not unmatched(got, want, floor), "an fp16 detection has no CPU counterpart"
            compared += len(want)
    assert compared > 0
