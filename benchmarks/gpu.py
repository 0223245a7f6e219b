"""GPU benchmark: how many 1080p streams sampled at 1 frame/s one machine sustains, TensorRT vs CUDA vs CPU.

Measured in one run, on a 1080p H.264/MPEG-4 clip made from the bundled sample (upscaled, so the model
sees real people):

- decoder: one :class:`~vvctl.core.video.FrameSampler` decoding the clip at 1 frame/s sampling; every frame
  is decoded, so a 1080p stream costs its full frame rate. Reported per decoder thread and for
  ``--decoders`` threads at once (default: every core).
- inference, per provider: model start in a fresh process state with an empty engine cache (``first``:
  a TensorRT engine build), then again with the cache filled (``warm``: the engine is loaded); then
  sampled frames per second through the detector in orchestrate's batches. At 1 frame/s, frames/s is the
  number of streams inference keeps up with.
- streams: min(decoder streams, inference streams) for each provider; the limit is named.

A provider that cannot start here (no GPU, no TensorRT) is listed as not measured, with the reason, and
the CPU column is still measured. Ratios are against the CPU. Run from the repository root::

    .venv/bin/python benchmarks/gpu.py [--seconds 10] [--decoders N] [--batch-size 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from vvctl.core.detectors import load_detector
from vvctl.core.providers import GpuOptions
from vvctl.core.settings import load_settings
from vvctl.core.video import FrameSampler
from vvctl.ops.doctor import doctor

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "src" / "vvctl" / "data" / "samples" / "people-walkway.mp4"
MODEL = REPO_ROOT / "src" / "vvctl" / "data" / "models" / "person-ssdlite-mobilenetv2.onnx"
PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
SHORT = {"TensorrtExecutionProvider": "TensorRT", "CUDAExecutionProvider": "CUDA", "CPUExecutionProvider": "CPU"}
INFERENCE_MIN_S = 3.0


@dataclass
class Column:
    provider: str
    measured: bool
    reason: str | None = None
    precision: str | None = None
    first_load_s: float | None = None
    engine_first: str | None = None
    warm_load_s: float | None = None
    engine_warm: str | None = None
    infer_fps: float | None = None
    streams: float | None = None
    limit: str | None = None


def make_1080p_clip(target: Path, seconds: float) -> Path:
    """The bundled sample upscaled to 1920x1080, looped to ``seconds``."""
    cap = cv2.VideoCapture(str(SAMPLE))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames: list[NDArray[np.uint8]] = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1920, 1080))
    for i in range(round(fps * seconds)):
        writer.write(cv2.resize(frames[i % len(frames)], (1920, 1080), interpolation=cv2.INTER_LINEAR))
    writer.release()
    return target


def decode(path: Path) -> tuple[list[NDArray[np.uint8]], float, float]:
    """Sampled frames, media seconds, wall seconds for one decoder thread at 1 frame/s."""
    started = time.perf_counter()
    with FrameSampler(path, 1.0) as sampler:
        frames = [f.image for f in sampler]
    return frames, sampler.duration_s, time.perf_counter() - started


def decoder_streams(path: Path, threads: int) -> tuple[float, float]:
    """Streams at 1 frame/s that one decoder thread, and ``threads`` at once, keep up with (real time)."""
    _, media, wall = decode(path)
    single = media / wall
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda _: decode(path), range(threads)))
        wall_all = time.perf_counter() - started
    return single, sum(r[1] for r in results) / wall_all


def measure(provider: str, frames: list[NDArray[np.uint8]], batch_size: int, cache: Path) -> Column:
    column = Column(provider, True)
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CUDAExecutionProvider"]
    providers = list(dict.fromkeys(providers))
    gpu = GpuOptions(engine_cache_dir=cache)
    loads = []
    for _ in range(2):  # first: empty cache (engine build); warm: the engine is loaded from the cache
        detector = load_detector(MODEL, sha256=None, providers=providers, batch_size=batch_size, gpu=gpu)
        info = detector.info
        loads.append((info.load_s, info.engine.state if info.engine else "-"))
    column.first_load_s, column.engine_first = loads[0]
    column.warm_load_s, column.engine_warm = loads[1]
    column.precision = info.precision
    if info.provider != provider:
        return Column(provider, False, f"ran on {info.provider}: {info.fallback_reason}")
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < INFERENCE_MIN_S:
        for start in range(0, len(frames), batch_size):
            detector.detect(frames[start : start + batch_size])
        done += len(frames)
    column.infer_fps = done / (time.perf_counter() - started)
    return column


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 1080p clip")
    parser.add_argument("--decoders", type=int, default=os.cpu_count() or 1, help="decoder threads at once")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vvctl-gpu-bench-") as tmp:
        clip = make_1080p_clip(Path(tmp) / "walkway-1080p.mp4", args.seconds)
        frames, media_s, _ = decode(clip)
        per_thread, all_threads = decoder_streams(clip, args.decoders)
        settings = load_settings(None, env={"VV_STORAGE_ROOT": tmp}).settings
        checks = {c.name: c for c in doctor(settings).providers}
        columns = []
        for provider in PROVIDERS:
            check = checks[provider]
            if not check.starts:
                columns.append(Column(provider, False, check.reason))
                continue
            columns.append(measure(provider, frames, args.batch_size, Path(tmp) / f"cache-{SHORT[provider]}"))
    for column in columns:
        if column.infer_fps is not None:
            column.streams = min(all_threads, column.infer_fps)
            column.limit = "decoder" if all_threads <= column.infer_fps else "inference"

    result = {
        "clip": {"size": "1920x1080", "media_s": round(media_s, 2), "sampled_frames": len(frames)},
        "decoder": {
            "streams_per_thread": round(per_thread, 2),
            "threads": args.decoders,
            "streams_all_threads": round(all_threads, 2),
        },
        "providers": [asdict(c) for c in columns],
        "gpu": [g.name for g in doctor(settings).gpus],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print_table(result, columns, per_thread, all_threads, args.decoders)
    return 0


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(
    result: dict[str, Any], columns: list[Column], per_thread: float, all_threads: float, threads: int
) -> None:
    cpu = next((c for c in columns if c.provider == "CPUExecutionProvider" and c.measured), None)
    print(f"GPU: {', '.join(result['gpu']) or 'none'}; clip 1920x1080, {result['clip']['media_s']} s")
    print(
        f"decoder (1080p at 1 frame/s): {per_thread:.2f} streams per thread, {all_threads:.2f} with {threads} threads"
    )
    header = f"{'provider':<10}{'precision':>10}{'first load s':>14}{'(engine)':>10}{'warm load s':>13}{'(engine)':>10}"
    header += f"{'infer fps':>11}{'vs CPU':>8}{'streams':>9}  limit"
    print(header)
    for c in columns:
        if not c.measured:
            print(f"{SHORT[c.provider]:<10}  not measured: {c.reason}")
            continue
        ratio = c.infer_fps / cpu.infer_fps if cpu and cpu.infer_fps and c.infer_fps else None
        print(
            f"{SHORT[c.provider]:<10}{c.precision or '-':>10}{_fmt(c.first_load_s):>14}{c.engine_first or '-':>10}"
            f"{_fmt(c.warm_load_s):>13}{c.engine_warm or '-':>10}{_fmt(c.infer_fps, '.1f'):>11}"
            f"{_fmt(ratio, '.1f') + 'x' if ratio else '-':>8}{_fmt(c.streams, '.1f'):>9}  {c.limit or '-'}"
        )
    if any(not c.measured for c in columns):
        print("GPU columns not measured on this machine (see the reasons above); only the CPU column is real.")


if __name__ == "__main__":
    sys.exit(main())
