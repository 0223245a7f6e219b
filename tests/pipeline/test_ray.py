"""``orchestrate`` on a real local Ray cluster (``ray.init(num_cpus=2)``): outputs identical to the local
run, workers killed mid-video, a poisonous video, a coordinator killed after a commit, and several nodes.

Skipped where the ``ray`` extra is not installed; slow (each module starts a cluster): ``pytest -m ray``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'vvctl[ray]')")

from tests.pipeline.conftest import Box, check_outputs, every_video_once, wait_for  # noqa: E402
from tests.pipeline.distributed_helpers import drop_in_order, same_results, story  # noqa: E402
from tests.pipeline.test_distributed import files, spec_for  # noqa: E402
from vvctl.pipeline.distributed import AnalysisRequest, Pending  # noqa: E402
from vvctl.pipeline.orchestrate import Outcome  # noqa: E402
from vvctl.pipeline.ray_executor import RayExecutor  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster of 2 CPUs for the whole module; yields its address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class Killing(RayExecutor):
    """Kills (SIGKILL) the worker process analysing a video ``delay`` seconds after it got it, when
    ``kill(name, attempt)`` says so: a worker dying mid-video, as an OOM kill or a lost node would."""

    def __init__(self, box: Box, kill: Callable[[str, int], bool], delay: float = 1.0) -> None:
        super().__init__(spec_for(box), address="", actors=2, cpus_per_actor=1)
        self.kill = kill
        self.delay = delay
        self.attempts: dict[str, int] = {}
        self.killed: list[tuple[str, int]] = []
        self.threads: list[threading.Thread] = []

    def submit(self, request: AnalysisRequest) -> Pending:
        name = request.path.name
        self.attempts[name] = self.attempts.get(name, 0) + 1
        attempt = self.attempts[name]
        pending = super().submit(request)
        if self.kill(name, attempt):
            actor = pending.actor  # type: ignore[attr-defined]

            def shoot() -> None:
                pid = ray.get(actor.pid.remote())
                time.sleep(self.delay)
                if not pending.wait(0):  # still analysing: mid-video
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append((name, attempt))

            thread = threading.Thread(target=shoot)
            thread.start()
            self.threads.append(thread)
        return pending


def test_a_ray_cluster_gives_the_local_run_s_outputs_and_one_signed_chain(
    cluster: str, make_box: Callable[..., Box], clips: dict[str, Path]
) -> None:
    local, remote = make_box("local"), make_box("remote")
    for box in (local, remote):
        drop_in_order(box, [*files(clips), (clips["people"], "people-copy.avi")])
    local.run()
    executor = RayExecutor(spec_for(remote), address="", actors=2, cpus_per_actor=1)
    report = remote.run(executor=executor)

    assert report.counts["done"] == 3 and report.counts["duplicate"] == 1
    assert report.model is not None and report.model.provider == "CPUExecutionProvider"
    same_results(local, remote, check=check_outputs)


def test_a_worker_killed_mid_video_is_redone_as_attempt_2(
    cluster: str, make_box: Callable[..., Box], clips: dict[str, Path], long_clip: Path
) -> None:
    box = make_box(sample_interval_s=0.2)
    drop_in_order(box, [(long_clip, "long.avi"), (clips["cars"], "cars.mp4")])
    executor = Killing(box, kill=lambda name, attempt: (name, attempt) == ("long.avi", 1))
    report = box.run(executor=executor)
    for thread in executor.threads:
        thread.join()

    assert executor.killed == [("long.avi", 1)]
    long = [(r.outcome, r.attempts, r.reason) for r in report.videos if r.name == "long.avi"]
    assert long == [(Outcome.FAILED, 1, "crashed"), (Outcome.DONE, 2, None)]
    assert [s[:2] for s in story(box)].count(("analysed a video", "ok")) == 2  # nothing analysed twice
    every_video_once(box, {"long.avi", "cars.mp4"})
    check_outputs(box)


def test_a_video_that_kills_its_worker_every_time_is_quarantined_crashed(
    cluster: str, make_box: Callable[..., Box], clips: dict[str, Path], long_clip: Path
) -> None:
    box = make_box(sample_interval_s=0.2, max_attempts=2)
    drop_in_order(box, [(long_clip, "poison.avi"), (clips["cars"], "cars.mp4")])
    executor = Killing(box, kill=lambda name, _: name == "poison.avi")
    report = box.run(executor=executor)
    for thread in executor.threads:
        thread.join()

    assert executor.killed == [("poison.avi", 1), ("poison.avi", 2)]
    final = [r for r in report.videos if r.name == "poison.avi"][-1]
    assert (final.outcome, final.reason, final.attempts) == (Outcome.QUARANTINED, "crashed", 2)
    assert box.videos_in("corrupted") == ["poison.avi"] and box.videos_in("processed") == ["cars.mp4"]
    check_outputs(box)


def test_a_coordinator_killed_after_a_commit_is_finished_by_the_next_run(
    cluster: str, make_box: Callable[..., Box], clips: dict[str, Path], long_clip: Path
) -> None:
    box = make_box(
        executor="ray", ray_address=cluster, ray_actors=2, ray_cpus_per_actor=1, ray_allow_unauthenticated=True
    )
    drop_in_order(box, [(clips["cars"], "cars.mp4"), (long_clip, "long.avi"), (clips["people"], "people.avi")])
    proc = box.spawn("orchestrate")
    videos = box.root / "loglines" / "videos"

    def committed() -> bool:
        return any(videos.glob("*.logline.json"))

    assert wait_for(committed, proc, timeout=120), proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert box.videos_in("input"), "the coordinator finished before it could be killed"

    box.configure(executor="local")  # the next run may be local or distributed: the same state store
    report = box.run()
    assert report.job_status == "ok"
    every_video_once(box, {"cars.mp4", "long.avi", "people.avi"})
    ok = [s for s in story(box) if s[:2] == ("analysed a video", "ok")]
    assert len(ok) == 3, ok  # exactly one ok record per video, across both runs
    check_outputs(box)


MULTI_NODE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import ray
    from ray.cluster_utils import Cluster
    from vvctl.core.settings import load_settings
    from vvctl.pipeline.orchestrate import orchestrate, analysis_config_hash
    from vvctl.pipeline.distributed import AnalysisSpec
    from vvctl.pipeline.ray_executor import RayExecutor
    from vvctl.pipeline.scan import ScanParams

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    try:
        settings = load_settings(Path(sys.argv[1]), env={}).settings
        params = ScanParams(settings.sample_interval_s, settings.batch_size, settings.score_threshold,
                            settings.nms_iou, analysis_config_hash(settings))
        executor = RayExecutor(AnalysisSpec.from_settings(settings, params), address="", actors=2, cpus_per_actor=1)
        report = orchestrate(settings, executor=executor)
        nodes = [n for n in ray.nodes() if n["Alive"]]
        print(json.dumps({"counts": report.counts, "nodes": len(nodes)}))
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


def test_two_nodes_of_one_cpu_share_the_backlog(make_box: Callable[..., Box], clips: dict[str, Path]) -> None:
    """Ray's test cluster utilities in their own process (two raylets, one CPU each: one actor per node)."""
    box = make_box()
    drop_in_order(box, files(clips))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VV_")}
    done = subprocess.run(
        [sys.executable, "-c", MULTI_NODE, str(box.config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = load_json_line(done.stdout)
    assert result["nodes"] == 2
    assert result["counts"]["done"] == 3
    every_video_once(box, {"people.avi", "cars.mp4", "walkway.mp4"})
    check_outputs(box)


def load_json_line(text: str) -> dict[str, Any]:
    import json

    line = [x for x in text.splitlines() if x.startswith("{")][-1]
    value: dict[str, Any] = json.loads(line)
    return value
