"""Benchmark ``vvctl orchestrate`` against its own stages and a naive baseline, on the test clips.

Five measurements, each on the same clips with the same sampling and the same model:

(a) orchestrate end to end: the library call on a freshly bootstrapped storage root with copies of the
    clips in ``input/`` (hashing, probing, decoding, inference, summaries, signed LogLines, moves);
(b) decode only: the same sampling through :class:`~vvctl.core.video.FrameSampler`, no model;
(c) inference only: the detector, batched as orchestrate batches, on the frames (b) decoded;
(d) naive baseline: one thread, ``cap.read()`` of every frame, the model on each sampled frame alone;
(e) every frame decoded to colour with ``cap.read()``, no model: what (b) saves by ``grab()``-bing.

A two-stage pipeline cannot beat the dearer of its stages, so the goal for (a) is ``max(b, c)`` plus
at most 20 %. Each measurement is repeated ``--repeat`` times and the best run is reported, because the
machine may be shared. Run from the repository root::

    .venv/bin/python benchmarks/orchestrate.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from vvctl.core.detectors import Detector, load_detector
from vvctl.core.settings import Settings, load_settings
from vvctl.core.video import FrameSampler, probe
from vvctl.ops.bootstrap import bootstrap
from vvctl.pipeline.orchestrate import orchestrate

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = REPO_ROOT.parent / "shared" / "testdata" / "videos"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
TIME_EPSILON_S = 1e-6


@dataclass(frozen=True)
class Clip:
    path: Path
    frames: list[NDArray[np.uint8]]
    """The sampled frames, as (b) decoded them; (c) runs on these."""
    media_s: float


@dataclass
class Stage:
    key: str
    title: str
    runs: list[float]

    @property
    def best(self) -> float:
        return min(self.runs)


def fresh_settings(workdir: Path, clips: Sequence[Path]) -> Settings:
    """A bootstrapped storage root under ``workdir`` with copies of ``clips`` in input/."""
    root = workdir / "storage"
    loaded = load_settings(workdir / "config.toml", env={}, flags={"storage_root": str(root), "settle_s": 0})
    bootstrap(loaded)
    for clip in clips:
        shutil.copyfile(clip, root / "input" / clip.name)
    return loaded.settings


def run_orchestrate(clips: Sequence[Path], expect_frames: int) -> float:
    with tempfile.TemporaryDirectory(prefix="vvctl-bench-") as tmp:
        settings = fresh_settings(Path(tmp), clips)
        began = time.perf_counter()
        report = orchestrate(settings)
        elapsed = time.perf_counter() - began
    outcomes = sorted({result.outcome.value for result in report.videos})
    if len(report.videos) != len(clips) or outcomes != ["done"]:
        raise SystemExit(
            f"orchestrate did not analyse every clip: {[(r.name, r.outcome.value) for r in report.videos]}"
        )
    if report.frames_sampled != expect_frames:
        raise SystemExit(f"orchestrate sampled {report.frames_sampled} frames, decode-only sampled {expect_frames}")
    return elapsed


def decode_sampled(clips: Sequence[Path], interval_s: float, queue_size: int) -> tuple[float, list[Clip]]:
    decoded: list[Clip] = []
    began = time.perf_counter()
    for path in clips:
        # As the pipeline does: probe, then sample in the producer thread.
        with FrameSampler(path, interval_s, queue_size=queue_size, info=probe(path)) as sampler:
            frames = [frame.image for frame in sampler]
        decoded.append(Clip(path, frames, sampler.duration_s))
    return time.perf_counter() - began, decoded


def infer(detector: Detector, clips: Sequence[Clip], batch_size: int) -> float:
    began = time.perf_counter()
    for clip in clips:
        for start in range(0, len(clip.frames), batch_size):
            detector.detect(clip.frames[start : start + batch_size])
    return time.perf_counter() - began


def naive(detector: Detector, clips: Sequence[Path], interval_s: float) -> tuple[float, int]:
    sampled = 0
    began = time.perf_counter()
    for path in clips:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        next_sample = 0
        try:
            while True:
                ok, image = cap.read()
                if not ok:
                    break
                time_s = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if time_s + TIME_EPSILON_S >= next_sample * interval_s:
                    detector.detect([image])
                    sampled += 1
                    next_sample = int((time_s + TIME_EPSILON_S) // interval_s) + 1
        finally:
            cap.release()
    return time.perf_counter() - began, sampled


def decode_every_frame(clips: Sequence[Path]) -> float:
    began = time.perf_counter()
    for path in clips:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            while cap.read()[0]:
                pass
        finally:
            cap.release()
    return time.perf_counter() - began


def measure(
    clips: Sequence[Path], repeat: int, settings: Settings, queue_size: int, log: Callable[[str], None]
) -> tuple[dict[str, Stage], int, float, Detector]:
    detector = load_detector(
        settings.model_path if settings.model_path.is_file() else bundled_model(),
        sha256=settings.model_sha256,
        kind=settings.detector,
        providers=settings.providers,
        score_threshold=settings.score_threshold,
        nms_iou=settings.nms_iou,
        batch_size=settings.batch_size,
    )
    interval_s, batch_size = settings.sample_interval_s, settings.batch_size
    stages = {
        key: Stage(key, title, [])
        for key, title in [
            ("a", "orchestrate end to end"),
            ("b", "decode only (sampled)"),
            ("c", "inference only"),
            ("d", "naive: read all + 1-by-1"),
            ("e", "decode every frame"),
        ]
    }
    # Warm-up: file cache, decoder and model initialisation, so run 1 is not an outlier.
    _, decoded = decode_sampled(clips, interval_s, queue_size)
    infer(detector, decoded[:1], batch_size)
    frames = sum(len(c.frames) for c in decoded)
    media_s = sum(c.media_s for c in decoded)
    for run in range(1, repeat + 1):
        # Interleaved, so that a burst of load from elsewhere spreads over all stages.
        seconds, decoded = decode_sampled(clips, interval_s, queue_size)
        stages["b"].runs.append(seconds)
        stages["c"].runs.append(infer(detector, decoded, batch_size))
        del decoded
        stages["a"].runs.append(run_orchestrate(clips, frames))
        seconds, naive_frames = naive(detector, clips, interval_s)
        if naive_frames != frames:
            raise SystemExit(f"the naive baseline sampled {naive_frames} frames, the sampler {frames}")
        stages["d"].runs.append(seconds)
        stages["e"].runs.append(decode_every_frame(clips))
        log(f"run {run}/{repeat}: " + ", ".join(f"{s.key}={s.runs[-1]:.2f}s" for s in stages.values()))
    return stages, frames, media_s, detector


def bundled_model() -> Path:
    from importlib.resources import files

    return Path(str(files("vvctl.data") / "models" / "person-ssdlite-mobilenetv2.onnx"))


def render(stages: dict[str, Stage], frames: int, media_s: float) -> tuple[str, dict[str, float]]:
    lines = [
        f"{'stage':<30} {'best s':>8} {'all runs (s)':<28} {'sampled fr/s':>12} {'x realtime':>10}",
        "-" * 92,
    ]
    for stage in stages.values():
        runs = " ".join(f"{r:.2f}" for r in stage.runs)
        lines.append(
            f"({stage.key}) {stage.title:<26} {stage.best:>8.2f} {runs:<28} "
            f"{frames / stage.best:>12.1f} {media_s / stage.best:>10.1f}"
        )
    a, b, c, d, e = (stages[k].best for k in "abcde")
    ratios = {
        "a / max(b, c)": a / max(b, c),
        "d / a": d / a,
        "e / b": e / b,
    }
    goals = {"a / max(b, c)": "goal <= 1.2", "d / a": "goal > 1", "e / b": "goal > 1"}
    lines.append("")
    for name, value in ratios.items():
        lines.append(f"{name:<14} {value:6.2f}   ({goals[name]})")
    return "\n".join(lines), ratios


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder with the clips")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    parser.add_argument("--queue-size", type=int, default=8, help="FrameSampler queue size for (b)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    clips = sorted(p for p in args.videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        parser.error(f"no video clips in {args.videos}")

    # The settings orchestrate will use, from a throwaway root: same model, sampling and batching.
    with tempfile.TemporaryDirectory(prefix="vvctl-bench-") as tmp:
        settings = fresh_settings(Path(tmp), [])
        log = (lambda _: None) if args.json else (lambda text: print(text, file=sys.stderr, flush=True))
        stages, frames, media_s, detector = measure(clips, args.repeat, settings, args.queue_size, log)
    table, ratios = render(stages, frames, media_s)
    info = detector.info
    header = {
        "clips": [p.name for p in clips],
        "media_s": round(media_s, 2),
        "sampled_frames": frames,
        "interval_s": settings.sample_interval_s,
        "batch_size": settings.batch_size,
        "model": info.name,
        "provider": info.provider,
        "opencv": cv2.__version__,
        "repeat": args.repeat,
    }
    if args.json:
        out: dict[str, Any] = header | {
            "stages": {s.key: {"title": s.title, "best_s": s.best, "runs_s": s.runs} for s in stages.values()},
            "ratios": ratios,
        }
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{len(clips)} clips, {media_s:.1f} s of video, {frames} sampled frames every "
            f"{settings.sample_interval_s:g} s; {info.name} on {info.provider}, batch {settings.batch_size}; "
            f"best of {args.repeat}"
        )
        print(table)
    return 0 if math.isfinite(ratios["a / max(b, c)"]) else 1


if __name__ == "__main__":
    sys.exit(main())
