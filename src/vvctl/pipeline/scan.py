"""One video → its analytic document: sampled frames through the detector, in a two-stage pipeline.

:class:`~vvctl.core.video.FrameSampler` decodes in its own thread into a bounded queue while this
thread runs the detector on batches of ``batch_size`` frames. OpenCV's decoder and ONNX Runtime both
release the GIL, so decoding the next frames overlaps inference on the current batch and the cheaper
stage hides behind the dearer one.

With ``workers`` > 1 (the CPU plan of :func:`inference_plan`), up to ``workers`` batches are in the
detector at once, sharing one ONNX Runtime session with half the cores each. Independent batches keep
every core busy without the lock-step of one batch split across all cores, where the decoder thread
preempting one intra-op thread stalls them all. Results are consumed strictly in order.

A watchdog thread enforces the per-video deadline and the caller's stop request even when the decoder
is stuck inside one frame: it closes the sampler, which ends the iteration within a fraction of a second.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vvctl.core.detectors import Detection, Detector, EngineStatus
from vvctl.core.errors import ExitCode, InterruptedRun, VVError
from vvctl.core.names import display
from vvctl.core.providers import GPU_PROVIDERS
from vvctl.core.timeutil import Clock, rfc3339, utcnow
from vvctl.core.video import FrameSampler, SampledFrame, VideoInfo, probe

SCHEMA_VERSION = 1
WATCHDOG_POLL_S = 0.05


def gpu_fell_back(requested: Sequence[str], provider: str) -> bool:
    """A GPU execution provider was asked for, but the model ended up on a non-GPU one (CPU)."""
    return any(p in GPU_PROVIDERS for p in requested) and provider not in GPU_PROVIDERS


@dataclass(frozen=True)
class InferencePlan:
    intra_op_threads: int | None
    """ONNX Runtime intra-op threads per session run (None: its default, one per core)."""
    workers: int
    """Batches in the detector at once."""


def inference_plan(cpus: int | None = None, *, intra_op_threads: int | None = None) -> InferencePlan:
    """How to spread inference over the CPU: two concurrent batches of half the cores each.

    An explicit ``intra_op_threads`` keeps the classic plan (one batch at a time with that many threads).
    Measured on a 2-core box with the bundled model: 2 workers of 1 thread finish the test clips about 10 %
    sooner than 1 worker of 2 threads while the decoder runs beside them (benchmarks/README.md). On a GPU
    provider the extra worker only queues behind the first; :func:`scan_video` is told the worker count
    after the provider is known.
    """
    if intra_op_threads is not None:
        return InferencePlan(intra_op_threads, 1)
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    if cpus < 2:
        return InferencePlan(None, 1)
    return InferencePlan(max(1, cpus // 2), 2)


class ScanTimeout(VVError):
    """Analysing one video took longer than ``max_video_seconds``: a failed attempt, not a bad file."""

    exit_code = ExitCode.INPUT
    reason = "timeout"


class ScanStopped(InterruptedRun):
    """The caller asked to stop (SIGTERM/SIGINT) while a video was being analysed."""


@dataclass(frozen=True)
class ScanParams:
    interval_s: float
    batch_size: int
    score_threshold: float
    nms_iou: float
    config_hash: str
    queue_size: int = 8
    workers: int = 1
    """Batches in the detector at once (see :func:`inference_plan`)."""


@dataclass(frozen=True)
class ScanProgress:
    name: str
    frames_sampled: int
    media_time_s: float
    elapsed_s: float


@dataclass(frozen=True)
class ScanResult:
    document: dict[str, Any]
    frames_sampled: int
    frames_decoded: int
    duration_s: float
    wall_s: float
    decode_wait_s: float
    inference_s: float


class _Watchdog:
    """Closes the sampler once the deadline passes or a stop is requested; remembers which happened."""

    def __init__(self, sampler: FrameSampler, deadline: float | None, should_stop: Callable[[], bool] | None) -> None:
        self.fired: str | None = None
        self._sampler = sampler
        self._deadline = deadline
        self._should_stop = should_stop
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vvctl-scan-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        if self._deadline is not None or self._should_stop is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def check(self) -> None:
        """Raise in the consumer thread if the watchdog fired (or would fire now)."""
        if self.fired is None:
            self.fired = self._due()
        if self.fired == "timeout":
            name = display(self._sampler.path.name)
            raise ScanTimeout(f"{name}: analysis ran past the per-video limit (max_video_seconds)")
        if self.fired == "stop":
            raise ScanStopped(f"{display(self._sampler.path.name)}: stopped on request; the video stays in input/")

    def _due(self) -> str | None:
        if self._should_stop is not None and self._should_stop():
            return "stop"
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return "timeout"
        return None

    def _run(self) -> None:
        while not self._done.wait(WATCHDOG_POLL_S):
            fired = self._due()
            if fired is not None:
                self.fired = fired
                self._sampler.close()
                return


def _detection_record(frame: SampledFrame, detection: Detection) -> dict[str, Any]:
    return {
        "t": round(frame.time_s, 4),
        "frame": frame.index,
        "label": detection.label,
        "class_id": detection.class_id,
        "confidence": round(min(max(float(detection.confidence), 0.0), 1.0), 4),
        "box": [round(float(v), 2) for v in detection.box],
    }


def _engine_record(engine: EngineStatus) -> dict[str, Any]:
    return {"state": engine.state, "seconds": engine.seconds, "profile": engine.profile}


def scan_video(
    path: Path,
    *,
    sha256: str,
    detector: Detector,
    params: ScanParams,
    deadline: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[ScanProgress], None] | None = None,
    clock: Clock = utcnow,
    info: VideoInfo | None = None,
) -> ScanResult:
    """Analyse ``path``; raises :class:`~vvctl.core.video.VideoError` for a bad file,
    :class:`ScanTimeout` past ``deadline`` (a ``time.monotonic()`` value), :class:`ScanStopped` on request.
    """
    started_at = clock()
    started = time.monotonic()
    info = probe(path) if info is None else info
    samples: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    decode_wait = 0.0
    inference = 0.0

    def timed_detect(batch: Sequence[SampledFrame]) -> tuple[list[list[Detection]], float]:
        began = time.perf_counter()
        results = detector.detect([frame.image for frame in batch])
        return results, time.perf_counter() - began

    def record(batch: Sequence[SampledFrame], results: list[list[Detection]], spent: float) -> None:
        nonlocal inference
        inference += spent
        for frame, found in zip(batch, results, strict=True):
            samples.append({"frame": frame.index, "t": round(frame.time_s, 4)})
            detections.extend(_detection_record(frame, d) for d in found)
        if on_progress is not None:
            on_progress(ScanProgress(display(path.name), len(samples), batch[-1].time_s, time.monotonic() - started))

    pool = ThreadPoolExecutor(params.workers, thread_name_prefix="vvctl-infer") if params.workers > 1 else None
    pending: deque[tuple[list[SampledFrame], Future[tuple[list[list[Detection]], float]]]] = deque()

    def submit(batch: list[SampledFrame]) -> None:
        if pool is None:
            record(batch, *timed_detect(batch))
            return
        pending.append((batch, pool.submit(timed_detect, batch)))
        while len(pending) >= params.workers:  # keep at most `workers` batches in flight, in order
            done_batch, future = pending.popleft()
            record(done_batch, *future.result())

    sampler = FrameSampler(path, params.interval_s, queue_size=params.queue_size, info=info)
    try:
        with sampler, _Watchdog(sampler, deadline, should_stop) as watchdog:
            watchdog.check()
            batch: list[SampledFrame] = []
            frames = iter(sampler)
            while True:
                waited = time.perf_counter()
                frame = next(frames, None)
                decode_wait += time.perf_counter() - waited
                watchdog.check()
                if frame is None:
                    break
                batch.append(frame)
                if len(batch) >= params.batch_size:
                    submit(batch)
                    batch = []
                    watchdog.check()
            if batch:
                submit(batch)
            while pending:
                done_batch, future = pending.popleft()
                record(done_batch, *future.result())
    finally:
        if pool is not None:
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=True)  # a batch already running finishes (tens of ms); none is left behind
    wall = time.monotonic() - started
    duration = sampler.duration_s
    finished_at = clock()
    model = detector.info
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "vvctl.analytic",
        "created_at": rfc3339(finished_at),
        "source": {
            "name": display(path.name),
            "path": display(str(path)),
            "sha256": sha256,
            "size": info.size,
            "codec": info.codec,
            "width": info.width,
            "height": info.height,
            "fps": round(info.fps, 6),
            "frames": info.reported_frames,
            "frames_decoded": sampler.frames_read,
            "duration_s": round(duration, 4),
        },
        "model": {
            "name": model.name,
            "sha256": model.sha256,
            "format": model.format,
            "provider": model.provider,
            "requested_providers": list(model.requested_providers),
            "fallback_reason": model.fallback_reason,
            "gpu_fallback": gpu_fell_back(model.requested_providers, model.provider),
            "precision": model.precision,
            "load_s": model.load_s,
            "engine": None if model.engine is None else _engine_record(model.engine),
            "labels": {str(class_id): label for class_id, label in sorted(model.labels.items())},
        },
        "sampling": {
            "interval_s": params.interval_s,
            "frames_sampled": len(samples),
            "batch_size": params.batch_size,
            "score_threshold": params.score_threshold,
            "nms_iou": params.nms_iou,
        },
        "config_hash": params.config_hash,
        "samples": samples,
        "detections": detections,
        "timings": {
            "started_at": rfc3339(started_at),
            "finished_at": rfc3339(finished_at),
            "wall_s": round(wall, 4),
            "decode_wait_s": round(decode_wait, 4),
            "inference_s": round(inference, 4),
            "sampled_fps": round(len(samples) / wall, 3) if wall > 0 else 0.0,
            "realtime_factor": round(duration / wall, 3) if wall > 0 else 0.0,
        },
    }
    return ScanResult(
        document=document,
        frames_sampled=len(samples),
        frames_decoded=sampler.frames_read,
        duration_s=duration,
        wall_s=wall,
        decode_wait_s=decode_wait,
        inference_s=inference,
    )
