"""Object detector backends on onnxruntime: TF Object Detection API SSD and Ultralytics YOLO exports.

Imported lazily by the commands that run inference: it imports cv2 and onnxruntime at module level.

:func:`load_detector` verifies the model's SHA-256 pin, picks the execution provider (GPU when it
really works, CPU otherwise, and says why), recognises the model's interface and returns a
:class:`Detector` that takes BGR frames as OpenCV decodes them and returns boxes in frame pixels.
"""

from __future__ import annotations

import ast
import ctypes
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, cast

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from vvctl.core.engine_cache import EngineCache, EngineKey, ShapeProfile, open_engine_cache
from vvctl.core.errors import DependencyError, InputError, IntegrityError, StorageError
from vvctl.core.hardware import GpuDevice, cuda_devices, tensorrt_version
from vvctl.core.hashing import sha256_bytes
from vvctl.core.providers import (
    GPU_PROVIDERS,
    MIB,
    TENSORRT,
    GpuOptions,
    cuda_options,
    preload_pip_nvidia_libraries,
    resolve_precision,
    session_providers,
    tensorrt_options,
)

DEFAULT_PROVIDERS: Final = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
DETECTOR_KINDS: Final = ("auto", "ssd", "yolo")

_SSD_OUTPUTS: Final = ("detection_boxes", "detection_scores", "detection_classes")
_SSD_INTERNAL_RESIZE = re.compile(r"resized internally to (\d+)x(\d+)(?:, (\w+))?")
_YOLO_PAD_VALUE: Final = 114
_YOLO_DEFAULT_SIZE: Final = 640
# Ultralytics' own non_max_suppression limits: at most this many candidates enter NMS, and this many
# boxes leave it per image.
_YOLO_MAX_NMS: Final = 30000
_YOLO_MAX_DET: Final = 300
_YOLO_CLASS_OFFSET: Final = 7680.0
_CPU_PROVIDER: Final = "CPUExecutionProvider"
# onnxruntime's exception types that mean "this file is not a usable model" whatever the provider.
_MODEL_ERROR_TYPES: Final = frozenset({"InvalidProtobuf", "InvalidGraph", "NoModel", "NoSuchFile"})
_PROVIDER_LIBRARIES: Final = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt"}
# ORT's per-session log level: ERROR. The process-wide default logger goes to FATAL, because a GPU
# provider that fails to load logs an ERROR there even though the session then runs fine on CPU;
# ModelInfo.fallback_reason reports that instead.
_SESSION_LOG_SEVERITY: Final = 3
_DEFAULT_LOG_SEVERITY: Final = 4

Frame = NDArray[np.uint8]

log = logging.getLogger("vvctl.detectors")


@dataclass(frozen=True)
class Detection:
    """One detected object in one frame."""

    label: str
    class_id: int
    confidence: float
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in pixels of the frame that was passed in, clipped to it."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence!r}")
        if self.class_id < 0:
            raise ValueError(f"class_id must not be negative, got {self.class_id}")
        x1, y1, x2, y2 = self.box
        if not all(math.isfinite(v) for v in self.box) or x1 > x2 or y1 > y2:
            raise ValueError(f"box must be finite (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, got {self.box}")


@dataclass(frozen=True)
class EngineStatus:
    """What happened to the TensorRT engine when the model was loaded."""

    state: str
    """``built`` (no cached engine fitted: built now, and cached), ``loaded`` (from the cache), or
    ``uncached`` (no cache configured, or TensorRT wrote no engine)."""
    seconds: float
    """Session start plus the first (warm-up) inference: the build time when ``built``."""
    cache_dir: Path | None
    profile: str
    """The input shapes the engine covers (min .. opt .. max), or ``dynamic``."""
    precision_note: str | None = None
    """Why the engine is fp32 although fp16 was asked for, if it is."""


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded and where it actually runs; recorded in every analytic file."""

    name: str
    sha256: str
    format: str
    """``ssd`` or ``yolo``."""
    labels: dict[int, str]
    provider: str
    """The execution provider that actually runs the model (``session.get_providers()[0]``)."""
    requested_providers: tuple[str, ...]
    fallback_reason: str | None
    """Why the first requested provider is not the one in use; None when it is."""
    batch_capable: bool
    input_size: tuple[int, int] | None
    """Fixed (height, width) of the model input, or None when any size is accepted."""
    precision: str = "fp32"
    """Precision the provider in use computes in: the TensorRT engine's (``fp16``/``fp32``), else fp32."""
    load_s: float = 0.0
    """Seconds from session start to the end of the warm-up inference (GPU) or of session start (CPU)."""
    engine: EngineStatus | None = None
    """The TensorRT engine, when TensorRT is the provider in use."""


class Detector(Protocol):
    info: ModelInfo

    def detect(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        """Detect objects in BGR uint8 HxWx3 frames; one list of detections per frame, in order."""
        ...


def load_detector(
    path: Path,
    *,
    sha256: str | None,
    kind: str = "auto",
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    score_threshold: float = 0.5,
    nms_iou: float = 0.45,
    batch_size: int = 4,
    intra_op_threads: int | None = None,
    gpu: GpuOptions | None = None,
) -> Detector:
    """Load an ONNX detector.

    ``sha256``: when given, the model file must hash to it, else :class:`IntegrityError` and nothing
    is loaded. The bytes that are hashed are the bytes that are loaded, so the file cannot be swapped
    in between. ``kind``: ``auto`` recognises the interface from the model's inputs and outputs.
    ``providers``: tried in order; the one actually in use is in ``info.provider``, and
    ``info.fallback_reason`` says why earlier ones were not used (also logged as a warning on
    ``vvctl.detectors``). When none of the requested providers can run the model (for example only
    ``CUDAExecutionProvider`` on a machine without a GPU) it raises :class:`DependencyError` rather
    than run on an unrequested CPU. A file that is not an ONNX model raises :class:`InputError`.
    ``score_threshold``: minimum
    confidence kept. ``nms_iou``: IoU above which overlapping boxes of one class are suppressed, for
    backends without NMS inside the model (YOLO; the SSD graph does its own). ``batch_size``: frames per
    inference call where the model accepts a batch. ``intra_op_threads``: None leaves onnxruntime's
    default (one per physical core). ``gpu``: precision, device, memory cap and engine cache of the GPU
    providers (:class:`~vvctl.core.providers.GpuOptions`; None: its defaults, without an engine cache).
    On a GPU provider the model runs once on a blank batch before this returns, so an engine build or
    kernel selection happens here and not inside the first video.
    """
    if kind not in DETECTOR_KINDS:
        raise ValueError(f"kind must be one of {DETECTOR_KINDS}, got {kind!r}")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
    if not 0.0 < nms_iou <= 1.0:
        raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if intra_op_threads is not None and intra_op_threads < 1:
        raise ValueError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
    requested = tuple(providers)
    if not requested:
        raise ValueError("providers must name at least one execution provider")

    model_bytes = _read_model(path)
    digest = sha256_bytes(model_bytes)
    if sha256 is not None and digest != sha256.strip().lower():
        raise IntegrityError(
            f"model {path.name}: SHA-256 is {digest}, expected {sha256.strip().lower()}; refusing to load it"
        )

    gpu = GpuOptions() if gpu is None else gpu

    def plan() -> TensorrtPlan | str:
        return plan_tensorrt(model_bytes, path, kind=kind, batch_size=batch_size, gpu=gpu, digest=digest)

    started = time.perf_counter()
    session, provider, fallback_reason, trt = _create_session(
        model_bytes, path, requested, intra_op_threads, gpu=gpu, plan_tensorrt=plan
    )
    if fallback_reason is not None:
        log.warning("model %s: %s", path.name, fallback_reason)
    labels = _labels(session, path)
    fmt = _model_format(session, kind, path)
    common: dict[str, Any] = {
        "session": session,
        "score_threshold": score_threshold,
        "batch_size": batch_size,
    }
    detector: SsdDetector | YoloDetector = (
        SsdDetector(**common) if fmt == "ssd" else YoloDetector(**common, nms_iou=nms_iou)
    )
    on_tensorrt = provider == TENSORRT and trt is not None
    if provider in GPU_PROVIDERS:
        detector.warm_up(provider)
    load_s = time.perf_counter() - started
    detector.info = ModelInfo(
        name=path.name,
        sha256=digest,
        format=fmt,
        labels=labels,
        provider=provider,
        requested_providers=requested,
        fallback_reason=fallback_reason,
        batch_capable=detector.batch_capable,
        input_size=detector.input_size,
        precision=trt.precision if on_tensorrt and trt is not None else "fp32",
        load_s=round(load_s, 3),
        engine=_engine_status(trt, load_s, path.name) if on_tensorrt and trt is not None else None,
    )
    return detector


@dataclass(frozen=True)
class TensorrtPlan:
    """How the TensorRT provider is set up for one model on this GPU (see :func:`plan_tensorrt`)."""

    device: GpuDevice
    precision: str
    precision_note: str | None
    profile: str
    cache: EngineCache | None
    had_engine: bool
    """A cached engine for exactly this key existed before the session started."""
    options: dict[str, str]

    @property
    def builds(self) -> bool:
        return not self.had_engine


def plan_tensorrt(
    model_bytes: bytes,
    path: Path,
    *,
    kind: str,
    batch_size: int,
    gpu: GpuOptions,
    digest: str,
    trt_version: Callable[[], str | None] | None = None,
    devices: Callable[[], list[GpuDevice] | str] | None = None,
) -> TensorrtPlan | str:
    """The TensorRT provider options for this model on this GPU, or why TensorRT cannot be used.

    Reads the TensorRT version and the GPU from their libraries (``trt_version``/``devices`` are
    injectable for tests), declares the input shapes the detector will feed as an optimisation
    profile, and opens the engine cache folder for the resulting :class:`EngineKey`.
    """
    version = (trt_version or tensorrt_version)()
    if version is None:
        return _provider_problem(TENSORRT, None)
    found = (devices or cuda_devices)()
    if isinstance(found, str):
        return found
    if gpu.device_id >= len(found):
        return f"there is no CUDA device {gpu.device_id} (the driver sees {len(found)})"
    device = found[gpu.device_id]
    precision, note = resolve_precision(gpu.precision, device)
    profile, described = _shape_profile(model_bytes, path, kind, batch_size)
    key = EngineKey(
        model_sha256=digest,
        onnxruntime=ort.__version__,
        tensorrt=version,
        gpu=device.name,
        compute_capability=device.sm,
        precision=precision,
        profile=described,
        max_workspace_bytes=gpu.gpu_mem_limit_mb * MIB,
    )
    cache = None
    if gpu.engine_cache_dir is not None:
        try:
            cache = open_engine_cache(gpu.engine_cache_dir, key, keep=gpu.engine_cache_keep)
        except OSError as exc:
            raise StorageError(
                f"cannot set up the TensorRT engine cache in {gpu.engine_cache_dir}: {exc.strerror or exc}"
            ) from exc
    return TensorrtPlan(
        device=device,
        precision=precision,
        precision_note=note,
        profile=described,
        cache=cache,
        had_engine=cache is not None and cache.has_engine(),
        options=tensorrt_options(gpu, precision=precision, profile=profile, cache=cache),
    )


def _shape_profile(model_bytes: bytes, path: Path, kind: str, batch_size: int) -> tuple[ShapeProfile | None, str]:
    """The optimisation profile covering every batch the detector feeds (1 .. ``batch_size`` frames, so
    the last short batch of a video fits too), and its description for the cache key.

    The profile is None when the input is fully static (TensorRT needs none) or its size cannot be told
    (an SSD without a declared internal resize takes frames at their own size: ``dynamic``).
    """
    options = ort.SessionOptions()
    options.log_severity_level = _SESSION_LOG_SEVERITY
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        inspect = ort.InferenceSession(model_bytes, sess_options=options, providers=[_CPU_PROVIDER])
    except _ORT_ERRORS as exc:
        raise InputError(f"{path.name} is not a loadable ONNX model: {_short_ort_error(exc)}") from exc
    fmt = _model_format(inspect, kind, path)
    common: dict[str, Any] = {"session": inspect, "score_threshold": 0.5, "batch_size": batch_size}
    probe = SsdDetector(**common) if fmt == "ssd" else YoloDetector(**common, nms_iou=0.5)
    opt = probe.feed_shape()
    if opt is None:
        return None, "dynamic"
    low = (probe.fixed_batch or 1, *opt[1:])
    profile = ShapeProfile(probe.input_name, low, opt, opt)
    static = all(isinstance(d, int) and d > 0 for d in probe.input_shape)
    return (None if static else profile), profile.describe()


def _engine_status(plan: TensorrtPlan, load_s: float, model: str) -> EngineStatus:
    cache = plan.cache
    state = "uncached"
    if cache is not None and plan.had_engine:
        state = "loaded"
    elif cache is not None and cache.has_engine():
        state = "built"
        try:
            cache.write_record(load_s)
        except StorageError as exc:
            log.warning("could not record the engine build: %s", exc)
        log.warning("model %s: TensorRT engine built in %.1f s, cached in %s", model, load_s, cache.engine_dir)
    return EngineStatus(
        state=state,
        seconds=round(load_s, 3),
        cache_dir=None if cache is None else cache.engine_dir,
        profile=plan.profile,
        precision_note=plan.precision_note,
    )


class _OnnxDetector:
    """Shared plumbing: the session, batching, frame checks and label lookup."""

    info: ModelInfo
    input_size: tuple[int, int] | None

    def __init__(self, *, session: Any, score_threshold: float, batch_size: int) -> None:
        self._session = session
        self._input = session.get_inputs()[0]
        self._score_threshold = score_threshold
        batch_dim = self._input.shape[0]
        # A fixed batch dimension must be fed exactly; a symbolic one (str/None) takes any batch.
        self._fixed_batch: int | None = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.batch_capable = self._fixed_batch != 1
        self._batch = self._fixed_batch or batch_size

    @property
    def fixed_batch(self) -> int | None:
        return self._fixed_batch

    @property
    def input_name(self) -> str:
        return str(self._input.name)

    @property
    def input_shape(self) -> list[Any]:
        return list(self._input.shape)

    def feed_shape(self) -> tuple[int, ...] | None:
        """The shape of a full batch as this detector feeds it, or None when it depends on the frames."""
        raise NotImplementedError

    def warm_up(self, provider: str) -> None:
        """Run one blank full batch, so engine builds and kernel selection happen now, not mid-video."""
        shape = self.feed_shape()
        if shape is None:
            return
        dtype = np.uint8 if self._input.type == "tensor(uint8)" else np.float32
        try:
            self._session.run(None, {self._input.name: np.zeros(shape, dtype=dtype)})
        except _ORT_ERRORS as exc:
            raise DependencyError(f"first inference on {provider} failed: {_short_ort_error(exc)}") from exc

    def detect(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        for frame in frames:
            _check_frame(frame)
        results: list[list[Detection]] = []
        for start in range(0, len(frames), self._batch):
            results.extend(self._detect_batch(frames[start : start + self._batch]))
        return results

    def _detect_batch(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        raise NotImplementedError

    def _run(self, blob: NDArray[Any]) -> list[NDArray[Any]]:
        try:
            outputs: list[NDArray[Any]] = self._session.run(None, {self._input.name: blob})
        except _ORT_ERRORS as exc:
            raise DependencyError(f"inference failed on {self.info.provider}: {_short_ort_error(exc)}") from exc
        return outputs

    def _label(self, class_id: int) -> str:
        return self.info.labels.get(class_id, str(class_id))


class SsdDetector(_OnnxDetector):
    """TF Object Detection API SSD graph: uint8 NHWC RGB in, normalized boxes after NMS out."""

    def __init__(self, *, session: Any, score_threshold: float, batch_size: int) -> None:
        super().__init__(session=session, score_threshold=score_threshold, batch_size=batch_size)
        self.input_size = None
        names = [o.name for o in session.get_outputs()]
        self._outputs = [names.index(n) for n in _matching_names(names, _SSD_OUTPUTS)]
        self._num_index = next((i for i, n in enumerate(names) if _base_name(n) == "num_detections"), None)
        self._resize_to = _ssd_internal_resize(session)

    def feed_shape(self) -> tuple[int, ...] | None:
        if self._resize_to is not None:
            return (self._batch, *self._resize_to, 3)
        _, height, width, _ = self._input.shape
        if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
            return (self._batch, height, width, 3)
        return None

    def _prepare(self, frame: Frame) -> Frame:
        if self._resize_to is not None:
            height, width = frame.shape[:2]
            out_h, out_w = self._resize_to
            # The graph resizes with TF1's legacy bilinear (align_corners=False, no half-pixel
            # centres): output pixel x samples input x * in/out. A plain scaling warpAffine samples
            # exactly there, so handing the graph an image already at its size skips its resize
            # (a no-op at scale 1) and gives the same detections; cv2.resize uses half-pixel
            # centres and shifts scores by up to ~0.2 on this model.
            matrix = np.array([[out_w / width, 0.0, 0.0], [0.0, out_h / height, 0.0]])
            frame = cast(
                Frame,
                cv2.warpAffine(frame, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
            )
        return cast(Frame, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))

    def _detect_batch(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        prepared = [self._prepare(f) for f in frames]
        results: list[list[Detection]] = []
        # Images in one run must share H and W: run each run of equally sized images together.
        start = 0
        while start < len(prepared):
            end = start + 1
            while end < len(prepared) and prepared[end].shape == prepared[start].shape:
                end += 1
            blob = np.stack(prepared[start:end])
            if self._fixed_batch is not None and len(blob) < self._fixed_batch:
                blob = _pad_batch(blob, self._fixed_batch)
            outputs = self._run(blob)
            boxes, scores, classes = (outputs[i] for i in self._outputs)
            counts = outputs[self._num_index] if self._num_index is not None else None
            for i, frame in enumerate(frames[start:end]):
                n = int(counts[i]) if counts is not None else len(scores[i])
                results.append(self._decode(frame, boxes[i][:n], scores[i][:n], classes[i][:n]))
            start = end
        return results

    def _decode(
        self, frame: Frame, boxes: NDArray[Any], scores: NDArray[Any], classes: NDArray[Any]
    ) -> list[Detection]:
        height, width = frame.shape[:2]
        keep = scores >= self._score_threshold
        detections = []
        # Boxes are normalized to the image fed in, and the pre-resize stretches the whole frame, so
        # scaling by the original frame size maps them back either way.
        for (ymin, xmin, ymax, xmax), score, cls in zip(boxes[keep], scores[keep], classes[keep], strict=True):
            x1, x2 = sorted((_clip(xmin * width, width), _clip(xmax * width, width)))
            y1, y2 = sorted((_clip(ymin * height, height), _clip(ymax * height, height)))
            class_id = round(float(cls))
            detections.append(
                Detection(
                    label=self._label(class_id),
                    class_id=class_id,
                    confidence=_clip(float(score), 1.0),
                    box=(x1, y1, x2, y2),
                )
            )
        return detections


class YoloDetector(_OnnxDetector):
    """Ultralytics YOLO (v8 and later) export: letterboxed float NCHW in, raw ``[b, 4+nc, N]`` out."""

    def __init__(self, *, session: Any, score_threshold: float, batch_size: int, nms_iou: float) -> None:
        super().__init__(session=session, score_threshold=score_threshold, batch_size=batch_size)
        self._nms_iou = nms_iou
        _, _, h, w = self._input.shape
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            self.input_size = (h, w)
            self._size = (h, w)
        else:
            self.input_size = None
            self._size = _metadata_imgsz(session)

    def feed_shape(self) -> tuple[int, ...] | None:
        return (self._batch, 3, *self._size)

    def _letterbox(self, frame: Frame) -> tuple[NDArray[np.float32], float, int, int]:
        """Ultralytics' centred letterbox; returns the CHW blob, scale and (left, top) padding."""
        height, width = frame.shape[:2]
        target_h, target_w = self._size
        ratio = min(target_h / height, target_w / width)
        new_w, new_h = round(width * ratio), round(height * ratio)
        image: NDArray[Any] = frame
        if (new_w, new_h) != (width, height):
            image = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        pad_w, pad_h = (target_w - new_w) / 2, (target_h - new_h) / 2
        top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
        left, right = round(pad_w - 0.1), round(pad_w + 0.1)
        pad = (_YOLO_PAD_VALUE,) * 3
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=pad)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        blob = rgb.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)
        return blob, ratio, left, top

    def _detect_batch(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        boxed = [self._letterbox(f) for f in frames]
        blob = np.stack([b[0] for b in boxed])
        if self._fixed_batch is not None and len(blob) < self._fixed_batch:
            blob = _pad_batch(blob, self._fixed_batch)
        (output,) = self._run(blob)[:1]
        return [
            self._decode(frame, output[i], ratio, left, top)
            for i, (frame, (_, ratio, left, top)) in enumerate(zip(frames, boxed, strict=True))
        ]

    def _decode(self, frame: Frame, pred: NDArray[Any], ratio: float, left: int, top: int) -> list[Detection]:
        class_scores = pred[4:]
        class_ids = class_scores.argmax(axis=0)
        confidences = class_scores[class_ids, np.arange(class_scores.shape[1])]
        keep = np.flatnonzero(confidences >= self._score_threshold)
        if keep.size == 0:
            return []
        keep = keep[np.argsort(-confidences[keep], kind="stable")][:_YOLO_MAX_NMS]
        cx, cy, w, h = pred[:4, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        # Shifting each class to its own region of the plane makes one NMS pass class-aware.
        offsets = class_ids[keep, None].astype(np.float32) * np.float32(_YOLO_CLASS_OFFSET)
        chosen = _nms(boxes + offsets, confidences[keep], self._nms_iou)[:_YOLO_MAX_DET]
        height, width = frame.shape[:2]
        detections = []
        for j in chosen:
            x1, y1, x2, y2 = boxes[j]
            class_id = int(class_ids[keep[j]])
            detections.append(
                Detection(
                    label=self._label(class_id),
                    class_id=class_id,
                    confidence=_clip(float(confidences[keep[j]]), 1.0),
                    box=(
                        _clip((float(x1) - left) / ratio, width),
                        _clip((float(y1) - top) / ratio, height),
                        _clip((float(x2) - left) / ratio, width),
                        _clip((float(y2) - top) / ratio, height),
                    ),
                )
            )
        return detections


def _nms(boxes: NDArray[Any], scores: NDArray[Any], iou_threshold: float) -> list[int]:
    """Greedy NMS; drops boxes overlapping a kept higher-scoring box by more than the threshold."""
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        kept.append(best)
        inter_w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        inter_h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = inter_w * inter_h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return kept


def _read_model(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DependencyError(f"model file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise DependencyError(f"model path is a directory, not a file: {path}") from exc
    except OSError as exc:
        raise DependencyError(f"cannot read model file {path}: {exc.strerror or exc}") from exc


def _ort_error_types() -> tuple[type[BaseException], ...]:
    # onnxruntime's own exceptions (InvalidProtobuf, Fail, EPFail, ...) derive from Exception
    # directly, not from RuntimeError.
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    found: list[type[BaseException]] = [RuntimeError, ValueError]
    for name in dir(state):
        value = getattr(state, name)
        if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == state.__name__:
            found.append(value)
    return tuple(found)


_ORT_ERRORS: Final = _ort_error_types()


def _create_session(
    model_bytes: bytes,
    path: Path,
    requested: tuple[str, ...],
    intra_op_threads: int | None,
    *,
    gpu: GpuOptions,
    plan_tensorrt: Callable[[], TensorrtPlan | str],
) -> tuple[Any, str, str | None, TensorrtPlan | None]:
    """Create the session on the first requested provider that really works.

    Returns the session, the provider in use, the fallback reason (None when the first requested
    provider is the one in use) and the TensorRT set-up when TensorRT was tried.
    """
    ort.set_default_logger_severity(_DEFAULT_LOG_SEVERITY)
    available = set(ort.get_available_providers())
    skipped: list[tuple[str, str]] = []
    candidates: list[str] = []
    for name in requested:
        if name in candidates:
            continue
        if name in available:
            candidates.append(name)
        else:
            skipped.append((name, "not available in this onnxruntime build"))
    if not candidates:
        raise DependencyError(
            f"none of the requested execution providers ({', '.join(requested)}) is available; "
            f"this onnxruntime offers {', '.join(sorted(available))}"
        )
    trt: TensorrtPlan | None = None
    if any(name in GPU_PROVIDERS for name in candidates):
        preload_pip_nvidia_libraries()
    if TENSORRT in candidates:
        # Decided before any session starts: the options name the engine cache, which depends on the
        # TensorRT version and the GPU; without either TensorRT cannot start anyway.
        planned = plan_tensorrt()
        if isinstance(planned, str):
            candidates.remove(TENSORRT)
            skipped.append((TENSORRT, planned))
        else:
            trt = planned
    cuda = cuda_options(gpu)
    for i, first in enumerate(candidates):
        options = ort.SessionOptions()
        options.log_severity_level = _SESSION_LOG_SEVERITY
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        # Idle intra-op workers busy-wait by default. Here the video decoder runs in another thread at
        # the same time, and on a small edge box the spinning takes its core: measured on 2 cores, the
        # SSD over the test clips costs 6.8 CPU-s spinning and 5.4 not, with faster wall time too.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = session_providers(candidates[i:], tensorrt=None if trt is None else trt.options, cuda=cuda)
        if first == TENSORRT and trt is not None and trt.builds and trt.cache is not None:
            message = (
                f"building the TensorRT engine for {path.name} ({trt.precision}, {trt.device.name}); the first "
                f"run with a new model, GPU, precision or version can take minutes, later runs load it from "
                f"{trt.cache.engine_dir}"
            )
            log.warning(message)
            if gpu.notify is not None:
                gpu.notify(message)
        try:
            # enable_fallback=0: without it onnxruntime retries on its own list and prints to stdout;
            # falling back here keeps the output clean and lets us record why.
            session = ort.InferenceSession(model_bytes, sess_options=options, providers=providers, enable_fallback=0)
        except _ORT_ERRORS as exc:
            if _is_model_error(exc) or (i == len(candidates) - 1 and first == _CPU_PROVIDER):
                # The file itself is the problem (not ONNX, a broken graph, an operator no provider
                # implements): trying other providers would only hide that.
                raise InputError(f"{path.name} is not a loadable ONNX model: {_short_ort_error(exc)}") from exc
            skipped.append((first, _provider_problem(first, exc)))
            continue
        in_use: str = session.get_providers()[0]
        # A GPU provider whose libraries do not load is dropped silently by onnxruntime: the session
        # is created and runs on the next provider (CPU, even when it was not asked for). Only the
        # provider list tells.
        for name in candidates[i:]:
            if name == in_use:
                break
            skipped.append((name, _provider_problem(name, None)))
        if in_use not in requested:
            break
        if in_use == requested[0]:
            return session, in_use, None, trt
        return session, in_use, f"{_describe_skipped(skipped)}; running on {in_use}", trt
    raise DependencyError(
        f"model {path.name}: {_describe_skipped(skipped)}; no requested execution provider can run it "
        f"(add {_CPU_PROVIDER} to providers to allow running on the CPU)"
    )


def _describe_skipped(skipped: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"{name} requested but unavailable: {why}" for name, why in skipped)


def _is_model_error(exc: BaseException) -> bool:
    return type(exc).__name__ in _MODEL_ERROR_TYPES


def _provider_problem(provider: str, error: BaseException | None) -> str:
    """A short, specific reason why a GPU provider is not in use."""
    library = _provider_library(provider)
    if library is not None:
        try:
            # The same load onnxruntime attempted, so it loads nothing new; the dynamic loader names
            # the first missing dependency (e.g. libcublasLt.so.13), which onnxruntime only logs.
            ctypes.CDLL(str(library), mode=getattr(os, "RTLD_LAZY", ctypes.DEFAULT_MODE))
        except OSError as exc:
            return _short_load_error(str(exc))
    if error is not None:
        return _short_ort_error(error)
    if provider in _PROVIDER_LIBRARIES and sys.platform == "linux" and not Path("/proc/driver/nvidia").exists():
        return "its libraries load, but no NVIDIA driver is running (no /proc/driver/nvidia)"
    return "onnxruntime could not initialise it (no GPU, or driver and CUDA versions do not match)"


def _provider_library(provider: str) -> Path | None:
    stem = _PROVIDER_LIBRARIES.get(provider)
    if stem is None:
        return None
    capi = Path(ort.__file__).parent / "capi"
    return next(iter(sorted(capi.glob(f"*onnxruntime_providers_{stem}.*"))), None)


def _short_load_error(message: str) -> str:
    missing = re.match(r"([^:\s]+): cannot open shared object file", message)
    if missing:
        return f"cannot load {missing.group(1)} (not installed, or not on the library path)"
    return _one_line(message)


def _short_ort_error(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    # Drop the C++ source location and function signature that prefix native error messages.
    text = re.sub(r"^\S+\.(?:cc|cpp|h):\d+ .*?\) ", "", text)
    return _one_line(text)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _model_format(session: Any, kind: str, path: Path) -> str:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    is_ssd = _looks_like_ssd(inputs, outputs)
    is_yolo = _looks_like_yolo(inputs, outputs)
    found = _describe_io(inputs, outputs)
    if kind == "ssd" and not is_ssd:
        raise InputError(f"{path.name} does not have the SSD detector interface; found {found}")
    if kind == "yolo" and not is_yolo:
        raise InputError(f"{path.name} does not have the Ultralytics YOLO interface; found {found}")
    if kind != "auto":
        return kind
    if is_ssd:
        return "ssd"
    if is_yolo:
        return "yolo"
    raise InputError(
        f"{path.name}: unrecognised detector interface ({found}); expected a TF Object Detection API "
        "SSD (uint8 NHWC image, detection_boxes/scores/classes) or an Ultralytics YOLO export "
        "(float NCHW image, one [batch, 4+classes, anchors] output)"
    )


def _looks_like_ssd(inputs: Sequence[Any], outputs: Sequence[Any]) -> bool:
    if len(inputs) != 1 or inputs[0].type != "tensor(uint8)":
        return False
    shape = inputs[0].shape
    if len(shape) != 4 or shape[3] != 3:
        return False
    names = [o.name for o in outputs]
    return len(_matching_names(names, _SSD_OUTPUTS)) == len(_SSD_OUTPUTS)


def _looks_like_yolo(inputs: Sequence[Any], outputs: Sequence[Any]) -> bool:
    if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(outputs) != 1:
        return False
    in_shape, out_shape = inputs[0].shape, outputs[0].shape
    if len(in_shape) != 4 or in_shape[1] != 3 or outputs[0].type != "tensor(float)" or len(out_shape) != 3:
        return False
    rows, anchors = out_shape[1], out_shape[2]
    # [b, 4+nc, N] with N (thousands of anchors) > 4+nc; an export with NMS inside is [b, 300, 6].
    return isinstance(rows, int) and rows >= 5 and (not isinstance(anchors, int) or anchors > rows)


def _describe_io(inputs: Sequence[Any], outputs: Sequence[Any]) -> str:
    def one(arg: Any) -> str:
        dims = ",".join(str(d) for d in arg.shape)
        return f"{arg.name} [{dims}] {arg.type.removeprefix('tensor(').removesuffix(')')}"

    return f"inputs {'; '.join(one(a) for a in inputs)}; outputs {'; '.join(one(a) for a in outputs)}"


def _base_name(name: str) -> str:
    return name.split(":")[0]


def _matching_names(names: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The output names matching ``wanted`` in order (TF exports may keep a ``:0`` suffix)."""
    by_base = {_base_name(n): n for n in names}
    return [by_base[w] for w in wanted if w in by_base]


def _labels(session: Any, path: Path) -> dict[int, str]:
    text = session.get_modelmeta().custom_metadata_map.get("names")
    if text is None:
        return {}
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise InputError(f"{path.name}: metadata 'names' is not a {{id: name}} mapping") from exc
    if not isinstance(value, dict) or not all(isinstance(k, int) and isinstance(v, str) for k, v in value.items()):
        raise InputError(f"{path.name}: metadata 'names' is not a {{id: name}} mapping")
    return dict(value)


def _ssd_internal_resize(session: Any) -> tuple[int, int] | None:
    """The (h, w) the SSD graph resizes to with bilinear, when the model's metadata says so.

    Pre-resizing is only equivalent for a graph that stretches to a fixed size with TF1 bilinear;
    models that keep the aspect ratio or resize otherwise get the full frame.
    """
    described = session.get_modelmeta().custom_metadata_map.get("input_format", "")
    match = _SSD_INTERNAL_RESIZE.search(described)
    if match is None or match.group(3) not in (None, "bilinear"):
        return None
    return int(match.group(1)), int(match.group(2))


def _metadata_imgsz(session: Any) -> tuple[int, int]:
    text = session.get_modelmeta().custom_metadata_map.get("imgsz")
    try:
        value = ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError):
        value = None
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    return _YOLO_DEFAULT_SIZE, _YOLO_DEFAULT_SIZE


def _pad_batch(blob: NDArray[Any], size: int) -> NDArray[Any]:
    padding = np.zeros((size - len(blob), *blob.shape[1:]), dtype=blob.dtype)
    return np.concatenate([blob, padding])


def _check_frame(frame: Any) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"frames must be BGR uint8 HxWx3 arrays, got {desc}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frames must not be empty, got shape {frame.shape}")


def _clip(value: float, upper: float) -> float:
    return min(max(float(value), 0.0), float(upper))
