"""``vvctl selftest``: the box's daily self-test, run as a job so the monitor's dead-man check sees it.

Three steps, each timed, each PASS or FAIL (the run goes on after a failure):

1. **pipeline**: the whole pipeline (bootstrap, ``orchestrate --once``, ``verify-logline``) on the bundled
   sample clip, in a scratch storage root under the system's temporary directory with its own config
   and key store, using the box's model and inference settings (the model and the TensorRT engine cache
   are read where they are; nothing of the box's data is read or written). The scratch root is removed.
2. **loglines**: the box's LogLines written since the last passing self-test (all of them the first
   time): each one's signature and form, its link to the record before it, and no record missing up to
   the chain head the state store recorded.
3. **integrity**: the installed files against the signed integrity manifest (``vv-signature.json``).

The run's own signed LogLine and job-run row land in the box's real storage, as every job's do.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from vvctl.core.errors import VVError
from vvctl.core.jobs import JobContext, JobOutcome, JobRunResult, JobSpec, run_job
from vvctl.core.jsonlog import configure_file_logging
from vvctl.core.keystore import load_keystore
from vvctl.core.logline import LOG_NAME, scan_log_files
from vvctl.core.settings import Settings
from vvctl.core.signing import VerificationKeys
from vvctl.core.state import JobStatus
from vvctl.core.timeutil import Clock, parse_rfc3339, utcnow

SPEC = JobSpec("selftest", "ran the self-test")
log = logging.getLogger("vvctl.selftest")

ANALYSIS_KEYS = (
    "sample_interval_s",
    "model_sha256",
    "detector",
    "score_threshold",
    "nms_iou",
    "batch_size",
    "providers",
    "precision",
    "gpu_device_id",
    "gpu_mem_limit_mb",
    "engine_cache_keep",
    "signing_algorithm",
    "status_rules",
    "max_video_seconds",
)
"""The box's settings the pipeline step runs with (plus the model and engine cache, as absolute paths)."""


class StepResult(StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"


@dataclass(frozen=True)
class SelftestStep:
    name: str
    result: StepResult
    detail: str
    seconds: float


@dataclass(frozen=True)
class SelftestReport:
    storage_root: Path
    steps: tuple[SelftestStep, ...]
    since: str | None
    """LogLines written from this time on were verified (the last passing self-test's start); None: all."""

    @property
    def passed(self) -> bool:
        return all(step.result is StepResult.PASS for step in self.steps)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def seconds(self) -> float:
        return round(sum(step.seconds for step in self.steps), 3)

    @property
    def outcome(self) -> JobOutcome:
        return JobOutcome.OK if self.passed else JobOutcome.FAILED

    @property
    def summary(self) -> str:
        parts = [f"{s.name} {s.result.value} ({s.seconds:.1f}s)" for s in self.steps]
        failed = [f"{s.name}: {s.detail}" for s in self.steps if s.result is StepResult.FAIL]
        return f"selftest {self.verdict}: " + ", ".join(parts) + ("; " + "; ".join(failed) if failed else "")


def scratch_settings(settings: Settings) -> dict[str, Any]:
    """The config of the scratch run: the box's analysis settings, the model and engine cache absolute."""
    values = settings.to_dict(redact=False)
    chosen = {key: values[key] for key in ANALYSIS_KEYS}
    chosen["model"] = str(settings.model_path.absolute())
    chosen["engine_cache_dir"] = str(settings.engine_cache_path.absolute())
    return chosen


def _pipeline(settings: Settings, scratch_parent: Path | None) -> tuple[StepResult, str]:
    from vvctl.ops.demo import run_demo

    scratch = Path(tempfile.mkdtemp(prefix="vvctl-selftest-", dir=scratch_parent))
    try:
        report = run_demo(scratch, settings=scratch_settings(settings))
    except VVError as exc:
        return StepResult.FAIL, exc.message
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    video = report.video
    detail = (
        f"{video.name}: {video.outcome.value}, {video.frames_sampled} frames on {report.provider or '-'}"
        f" (bootstrap {report.bootstrap_s:.1f}s, orchestrate {report.orchestrate_s:.1f}s,"
        f" verify {report.verify_s:.1f}s);"
        f" {report.loglines_valid}/{report.loglines_checked} LogLines valid"
    )
    if video.outcome.value != "done":
        detail += f"; {video.reason or ''} {video.message or ''}".rstrip()
    return (StepResult.PASS if report.ok and video.outcome.value == "done" else StepResult.FAIL), detail


def _new_files(directory: Path, since: float | None) -> list[Path]:
    """The LogLine files written at or after ``since`` (by file time) and the one record before them; with
    nothing new, the newest record (so a tail cut off since is still caught against the recorded head)."""
    files = scan_log_files(directory)
    seqs = sorted(files)
    if not seqs:
        return []
    first = 0
    if since is not None:
        first = len(seqs)
        while first > 0 and any(p.stat().st_mtime >= since for p in files[seqs[first - 1]]):
            first -= 1
        first = max(first - 1, 0)  # the record before the first new one: its hash is the new one's prev
    return [path for seq in seqs[first:] for path in files[seq]]


def verify_recent_loglines(
    settings: Settings, keys: VerificationKeys, since: datetime | None
) -> tuple[StepResult, str]:
    """Verify the LogLines of every log written since ``since`` (see the module docstring)."""
    from vvctl.core.layout import StorageLayout
    from vvctl.core.state import StateStore
    from vvctl.core.verify import verify_paths

    layout = StorageLayout(settings.storage_root)
    stamp = since.timestamp() - 1 if since is not None else None  # one second of slack for coarse file times
    paths: list[Path] = []
    if layout.loglines.is_dir():
        for entry in sorted(layout.loglines.iterdir()):
            if entry.is_dir() and not entry.is_symlink() and LOG_NAME.fullmatch(entry.name):
                paths.extend(_new_files(entry, stamp))
    heads: dict[str, tuple[int, str]] = {}
    if layout.state_db.exists():
        with StateStore(layout.state_db) as store:
            heads = {row.log: (row.seq, row.hash) for row in store.chain_heads()}
    if not paths and not heads:
        return StepResult.PASS, "no LogLines yet"
    report = verify_paths(paths, keys, expect_heads=heads)
    problems = [f"{Path(r.path).name}: {r.reason} {r.detail}".strip() for r in report.results if not r.valid]
    problems += [f"log {name}: {p}" for name, summary in report.logs.items() for p in summary.problems]
    counted = f"{report.valid} of {report.valid + report.invalid} LogLines in {len(report.logs)} log(s) valid"
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        return StepResult.FAIL, f"{counted}: {shown}"
    return StepResult.PASS, counted


def _integrity(settings: Settings, keys: VerificationKeys) -> tuple[StepResult, str]:
    from vvctl.ops.install.manifest import verify_integrity

    report = verify_integrity(settings, keys)
    return (StepResult.PASS if report.ok else StepResult.FAIL), report.summary


def _timed(name: str, step: Callable[[], tuple[StepResult, str]]) -> SelftestStep:
    started = time.perf_counter()
    try:
        result, detail = step()
    except VVError as exc:
        result, detail = StepResult.FAIL, exc.message
    return SelftestStep(name, result, detail, round(time.perf_counter() - started, 3))


def selftest(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    scratch_parent: Path | None = None,
    on_step: Callable[[SelftestStep], None] | None = None,
) -> JobRunResult[SelftestReport]:
    def body(ctx: JobContext) -> SelftestReport:
        previous = ctx.state.last_finished_job(SPEC.name, JobStatus.OK)
        since = parse_rfc3339(previous.started_at) if previous is not None else None
        keys = load_keystore(settings.key_store).verification_keys()
        steps: list[SelftestStep] = []

        def run(name: str, step: Callable[[], tuple[StepResult, str]]) -> None:
            ctx.progress = f"{name} running after {', '.join(f'{s.name} {s.result.value}' for s in steps) or 'nothing'}"
            done = _timed(name, step)
            steps.append(done)
            ctx.log.info("selftest step", extra={"step": name, "result": done.result.value, "seconds": done.seconds})
            if on_step is not None:
                on_step(done)

        try:
            run("pipeline", lambda: _pipeline(settings, scratch_parent))
        finally:
            # The scratch run moved the JSON log file to its own root; the rest of this run logs here.
            limits = {"max_bytes": settings.log_max_bytes, "backups": settings.log_backups}
            configure_file_logging(ctx.layout.logs, level=settings.log_level, **limits)
        run("loglines", lambda: verify_recent_loglines(settings, keys, since))
        run("integrity", lambda: _integrity(settings, keys))
        return SelftestReport(settings.storage_root, tuple(steps), previous.started_at if previous else None)

    return run_job(settings, SPEC, body, clock=clock)


__all__ = [
    "SPEC",
    "SelftestReport",
    "SelftestStep",
    "StepResult",
    "scratch_settings",
    "selftest",
    "verify_recent_loglines",
]
