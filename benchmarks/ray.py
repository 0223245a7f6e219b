"""Benchmark ``orchestrate`` on Ray against the local run, on this machine (needs ``pip install 'vvctl[ray]'``).

(a) per-video dispatch overhead: a round trip to an actor returning an analytic-sized document (5 KB)
    versus calling the same function in process;
(b) memory: resident memory of the coordinator plus its actor processes versus the local run's process,
    after analysing the same clips;
(c) throughput with simulated nodes: the shipped clips (several renamed-and-re-encoded copies, so no two
    share content) through ``orchestrate`` on 1 and 2 nodes of one CPU each (``ray.cluster_utils``),
    against the local run.

Run from the repository root::

    .venv/bin/python benchmarks/ray.py --copies 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named like the package it measures: keep its own folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from vvctl.core.settings import Settings, load_settings  # noqa: E402
from vvctl.ops.bootstrap import bootstrap  # noqa: E402
from vvctl.pipeline.distributed import AnalysisSpec  # noqa: E402
from vvctl.pipeline.orchestrate import analysis_config_hash, orchestrate  # noqa: E402
from vvctl.pipeline.ray_executor import RayExecutor  # noqa: E402
from vvctl.pipeline.scan import ScanParams  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLIPS = [
    REPO / "tests/data/people.avi",
    REPO / "tests/data/cars.mp4",
    REPO / "src/vvctl/data/samples/people-walkway.mp4",
]
DOCUMENT = {"detections": [{"t": i * 0.5, "label": "person", "box": [1.0, 2.0, 3.0, 4.0]} for i in range(60)]}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def make_box(root: Path, copies: int) -> Settings:
    config = root / "config.toml"
    config.write_text(
        f'storage_root = "{root}/box"\nsettle_s = 0\nsample_interval_s = 1.0\nproviders = ["CPUExecutionProvider"]\n'
    )
    bootstrap(load_settings(config, env={}))
    for copy in range(copies):
        for clip in CLIPS:
            target = root / "box" / "input" / f"{clip.stem}-{copy}{clip.suffix}"
            shutil.copyfile(clip, target)
            with target.open("ab") as fh:  # distinct content, same frames: a trailing byte the demuxer ignores
                fh.write(bytes([copy]))
    return load_settings(config, env={}).settings


def spec(settings: Settings) -> AnalysisSpec:
    params = ScanParams(
        settings.sample_interval_s,
        settings.batch_size,
        settings.score_threshold,
        settings.nms_iou,
        analysis_config_hash(settings),
    )
    return AnalysisSpec.from_settings(settings, params)


class Echo:
    def call(self, document: dict[str, Any]) -> dict[str, Any]:
        return document


def dispatch_overhead(n: int) -> tuple[float, float]:
    echo = Echo()
    began = time.perf_counter()
    for _ in range(n):
        echo.call(DOCUMENT)
    local = (time.perf_counter() - began) / n
    actor = ray.remote(num_cpus=0)(Echo).remote()
    ray.get(actor.call.remote(DOCUMENT))
    began = time.perf_counter()
    for _ in range(n):
        ray.get(actor.call.remote(DOCUMENT))
    remote = (time.perf_counter() - began) / n
    ray.kill(actor)
    return local, remote


def run_local(copies: int) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_box(Path(tmp), copies)
        began = time.perf_counter()
        report = orchestrate(settings)
        return time.perf_counter() - began, report.counts["done"], rss_kb(os.getpid())


def run_ray(copies: int, actors: int) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_box(Path(tmp), copies)
        executor = RayExecutor(spec(settings), address="", actors=actors, cpus_per_actor=1)
        executor.start()
        memory = rss_kb(os.getpid()) + sum(rss_kb(pid) for pid in executor.pids())
        began = time.perf_counter()
        report = orchestrate(settings, executor=executor)
        elapsed = time.perf_counter() - began
        return elapsed, report.counts["done"], memory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=4, help="copies of each of the 3 clips")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    local_s, local_done, local_kb = run_local(args.copies)

    rows: list[tuple[str, str, str]] = []
    for nodes in (1, 2):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        try:
            if nodes == 1:
                call_local, call_remote = dispatch_overhead(args.calls)
                rows.append(
                    (
                        "(a) dispatch per video",
                        f"{call_remote * 1e3:.2f} ms vs {call_local * 1e6:.1f} us in process",
                        f"+{(call_remote - call_local) * 1e3:.2f} ms",
                    )
                )
            elapsed, done, memory = run_ray(args.copies, actors=nodes)
        finally:
            ray.shutdown()
            cluster.shutdown()
        if nodes == 1:
            rows.append(
                (
                    "(b) memory (RSS)",
                    f"{memory / 1024:.0f} MiB vs {local_kb / 1024:.0f} MiB local",
                    f"{memory / local_kb:.2f}x",
                )
            )
        rows.append(
            (
                f"(c) {nodes} node(s) x 1 CPU",
                f"{done} videos in {elapsed:.1f} s ({done / elapsed:.2f}/s) vs local {local_s:.1f} s",
                f"{local_s / elapsed:.2f}x local",
            )
        )
    rows.append(("videos analysed (local)", f"{local_done} of {3 * args.copies} (the rest quarantined alike)", ""))
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'result':<60}  ratio")
    for name, result, ratio in rows:
        print(f"{name:<{width}}  {result:<60}  {ratio}")


if __name__ == "__main__":
    main()
