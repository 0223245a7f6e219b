"""``vvctl orchestrate``: every video in ``input/`` analysed once, recorded, signed and archived.

Per video: analytic JSON → summary JSON → signed LogLine (+ ``.md``) → state ``done`` → move to
``processed/``. A bad file goes to ``corrupted/`` with ``<name>.error.json`` and a ``quarantined``
LogLine instead, and the run goes on.

Crash safety comes from the order of the steps, not from cleanup code:

* the row is marked ``processing`` (attempt counted) before any work, so a video that kills the
  process every time ends in quarantine after ``max_attempts`` runs;
* every output is validated, then written atomically under a name derived from the content hash, so
  a rerun rewrites the same files and a reader never sees half a document;
* the state row records the destination *before* the video is moved, and moving is the last step:
  a run killed after that update finds the video still in ``input/`` with a finished row and only
  completes the move;
* a run killed earlier leaves the row ``processing`` and the video in ``input/``: the next run
  analyses it again.

The window between appending the LogLine and recording it in the state database is a few
microseconds; a kill exactly there yields a second LogLine for the same video on the rerun, never a
missing one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from vvctl.core.atomic import atomic_write_json, durable_move, remove_stale_temps
from vvctl.core.detectors import Detector, load_detector
from vvctl.core.errors import StorageError, VVError
from vvctl.core.hardware import has_gpu
from vvctl.core.jsonlog import configure_file_logging
from vvctl.core.keystore import load_keystore
from vvctl.core.layout import StorageLayout, check_storage_root
from vvctl.core.locks import exclusive_lock
from vvctl.core.logline import LogLineDraft, LogLineWriter, WrittenLogLine
from vvctl.core.providers import GpuOptions
from vvctl.core.schemas import validate
from vvctl.core.settings import Settings
from vvctl.core.timeutil import Clock, utcnow
from vvctl.core.video import VideoError, VideoInfo, probe
from vvctl.pipeline.discovery import Candidate, SettleTracker, free_destination, list_videos
from vvctl.pipeline.quarantine import REASONS, write_error_record
from vvctl.pipeline.scan import (
    GPU_PROVIDERS,
    ScanParams,
    ScanProgress,
    ScanStopped,
    ScanTimeout,
    gpu_fell_back,
    inference_plan,
    scan_video,
)
from vvctl.pipeline.summarize import summarize
from vvctl.pipeline.videostate import JobStatus, VideoRow, VideoStateStore, VideoStatus

log = logging.getLogger("vvctl.orchestrate")

JOB = "orchestrate"
WHO = "vvctl orchestrate"
ANALYTIC_SCHEMA = "analytic.schema.json"
SUMMARY_SCHEMA = "summary.schema.json"
REQUIRED_DIRS = ("input", "processed", "corrupted", "analytic", "summaries", "loglines", "state")


class Mode(StrEnum):
    ONCE = "once"
    WATCH = "watch"


class Outcome(StrEnum):
    DONE = "done"
    QUARANTINED = "quarantined"
    FAILED = "failed"
    """A failed attempt (timeout) below ``max_attempts``: the video stays in ``input/`` for a retry."""
    DUPLICATE = "duplicate"
    """Same content as a video handled before: moved out of ``input/`` without a second analysis."""
    RECOVERED = "recovered"
    """A killed run had finished this video but not moved it: only the move was done."""
    INTERRUPTED = "interrupted"
    """Stopped on request mid-video: the video stays in ``input/`` and its attempt is not counted."""


@dataclass(frozen=True)
class VideoResult:
    name: str
    sha256: str
    outcome: Outcome
    destination: Path | None = None
    status: str | None = None
    """Summary status class (``people_present``, ``activity``, ``quiet``, ...) for analysed videos."""
    text: str | None = None
    reason: str | None = None
    message: str | None = None
    attempts: int = 0
    frames_sampled: int = 0
    media_s: float = 0.0
    wall_s: float = 0.0
    analytic: Path | None = None
    summary: Path | None = None
    logline: Path | None = None


@dataclass(frozen=True)
class VideoStarted:
    name: str
    position: int
    total: int
    expected_samples: int | None
    duration_s: float | None


@dataclass(frozen=True)
class VideoProgress:
    name: str
    frames_sampled: int
    media_time_s: float
    elapsed_s: float


@dataclass(frozen=True)
class VideoFinished:
    result: VideoResult


@dataclass(frozen=True)
class ModelUsed:
    name: str
    sha256: str
    provider: str
    """The execution provider that actually runs the model."""
    requested_providers: tuple[str, ...]
    fallback_reason: str | None
    gpu_fallback: bool
    """A GPU provider was requested but the model runs on CPU: analysis is much slower than planned."""
    gpu_present: bool = True
    """This machine has a GPU (or it cannot be told). False on a CPU-only box."""

    @property
    def warning(self) -> str | None:
        """The loud one-line warning for a GPU request that ended on CPU although a GPU is there, else None.

        On a machine with no GPU at all, the default provider list ending on CPU is the expected outcome
        ("GPU when there is one, CPU otherwise"): it is recorded (``gpu_fallback``) and noted, not alarmed.
        """
        if not self.gpu_fallback or not self.gpu_present:
            return None
        return f"GPU inference was requested but {self.name} runs on {self.provider}: {self.fallback_reason}"

    @property
    def note(self) -> str | None:
        """A quiet remark for the CPU-only case the warning leaves out, else None."""
        if not self.gpu_fallback or self.gpu_present:
            return None
        return f"no GPU on this machine: {self.name} runs on {self.provider}"


@dataclass(frozen=True)
class EngineBuilding:
    """A TensorRT engine is about to be built (the first run with a new model, GPU or precision)."""

    message: str


@dataclass(frozen=True)
class ModelLoaded:
    """The detector was loaded (once per run, on the first video that needs it)."""

    model: ModelUsed


ProgressEvent = EngineBuilding | ModelLoaded | VideoStarted | VideoProgress | VideoFinished
ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class OrchestrateReport:
    mode: Mode
    storage_root: Path
    started_at: datetime
    finished_at: datetime
    passes: int
    videos: list[VideoResult]
    counts: dict[str, int]
    waiting: int
    """Video files in ``input/`` still settling (being written) at the last pass."""
    backlog: int
    """Video files left in ``input/`` when the run ended (settling, failed attempts, interrupted)."""
    stopped: bool
    """A stop was requested (SIGTERM/SIGINT)."""
    interrupted: bool
    """A video was abandoned half-way because of the stop; it is analysed again by the next run."""
    model: ModelUsed | None
    job_run_id: int
    job_status: str
    job_loglines: list[Path] = field(default_factory=list)
    frames_sampled: int = 0
    media_s: float = 0.0
    analysis_s: float = 0.0
    sampled_fps: float = 0.0
    realtime_factor: float = 0.0
    warnings: list[str] = field(default_factory=list)
    """Problems that did not stop the run but need a person (a GPU request that ended on CPU)."""


def model_used(detector: Detector) -> ModelUsed:
    info = detector.info
    return ModelUsed(
        name=info.name,
        sha256=info.sha256,
        provider=info.provider,
        requested_providers=tuple(info.requested_providers),
        fallback_reason=info.fallback_reason,
        gpu_fallback=gpu_fell_back(info.requested_providers, info.provider),
        gpu_present=has_gpu(),
    )


def load_configured_detector(
    settings: Settings, *, intra_op_threads: int | None = None, notify: Callable[[str], None] | None = None
) -> tuple[Detector, int]:
    """The configured detector, loaded with orchestrate's inference plan, and how many batches to keep in
    flight with it (two on the CPU, one on a GPU provider; see :func:`vvctl.pipeline.scan.inference_plan`).
    ``notify`` hears, before it starts, that a TensorRT engine is about to be built."""
    plan = inference_plan(intra_op_threads=intra_op_threads)
    detector = detector_from_settings(settings, intra_op_threads=plan.intra_op_threads, notify=notify)
    return detector, plan.workers if detector.info.provider not in GPU_PROVIDERS else 1


def gpu_options(settings: Settings, *, notify: Callable[[str], None] | None = None) -> GpuOptions:
    """The GPU provider set-up the settings ask for (precision, device, memory cap, engine cache)."""
    return GpuOptions(
        precision=settings.precision,
        device_id=settings.gpu_device_id,
        gpu_mem_limit_mb=settings.gpu_mem_limit_mb,
        engine_cache_dir=settings.engine_cache_path,
        engine_cache_keep=settings.engine_cache_keep,
        notify=notify,
    )


def detector_from_settings(
    settings: Settings, *, intra_op_threads: int | None = None, notify: Callable[[str], None] | None = None
) -> Detector:
    """The configured model, pinned by its SHA-256, with the configured backend, providers and thresholds."""
    return load_detector(
        settings.model_path,
        sha256=settings.model_sha256,
        kind=settings.detector,
        providers=settings.providers,
        score_threshold=settings.score_threshold,
        nms_iou=settings.nms_iou,
        batch_size=settings.batch_size,
        intra_op_threads=intra_op_threads,
        gpu=gpu_options(settings, notify=notify),
    )


def analysis_config_hash(settings: Settings) -> str:
    """SHA-256 of every setting that changes an analysis or its summary (``--reprocess`` compares it)."""
    relevant = {
        "model_sha256": settings.model_sha256,
        "detector": settings.detector,
        "sample_interval_s": settings.sample_interval_s,
        "score_threshold": settings.score_threshold,
        "nms_iou": settings.nms_iou,
        "status_rules": [[r.label, r.min_detections, r.status] for r in settings.status_rules],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def output_tag(video: Path, sha256: str) -> str:
    """``<stem>.<sha8>``: the name shared by a video's analytic, summary and LogLine files."""
    return f"{video.stem}.{sha256[:8]}"


def check_layout(settings: Settings) -> StorageLayout:
    layout = StorageLayout(check_storage_root(settings.storage_root))
    for name in REQUIRED_DIRS:
        if not (layout.root / name).is_dir():
            raise StorageError(
                f"storage root {layout.root} is not set up ({name}/ is missing); run 'vvctl bootstrap' first"
            )
    return layout


def _sha256_or_none(path: Path) -> str | None:
    """Content hash, or None when the file vanished since it was listed (moved away by someone else)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


class _StopRun(Exception):
    """Internal: leave the pass loop because a stop was requested mid-video."""


class _Run:
    """One orchestrate invocation: holds the lock, the state store, the LogLine writer and the detector."""

    def __init__(
        self,
        settings: Settings,
        layout: StorageLayout,
        db: VideoStateStore,
        writer: LogLineWriter,
        *,
        reprocess: bool,
        stop: threading.Event,
        on_progress: ProgressCallback | None,
        clock: Clock,
        intra_op_threads: int | None,
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.db = db
        self.writer = writer
        self.reprocess = reprocess
        self.stop = stop
        self.on_progress = on_progress
        self.clock = clock
        self.intra_op_threads = intra_op_threads
        self.config_hash = analysis_config_hash(settings)
        self.detector: Detector | None = None
        self.results: list[VideoResult] = []
        self.settle = SettleTracker(settings.settle_s)
        self.params = ScanParams(
            interval_s=settings.sample_interval_s,
            batch_size=settings.batch_size,
            score_threshold=settings.score_threshold,
            nms_iou=settings.nms_iou,
            config_hash=self.config_hash,
        )
        self.waiting = 0
        self.interrupted = False

    # -- helpers -----------------------------------------------------------------------------------

    def _emit(self, event: ProgressEvent) -> None:
        if self.on_progress is not None:
            self.on_progress(event)

    def _record(self, result: VideoResult) -> VideoResult:
        self.results.append(result)
        log.info(
            "video %s",
            result.outcome.value,
            extra={"video": result.name, "sha256": result.sha256, "reason": result.reason, "status": result.status},
        )
        self._emit(VideoFinished(result))
        return result

    def _load_detector(self) -> Detector:
        # Loaded on first use: a cron run with an empty backlog never pays for the model.
        if self.detector is None:
            self.detector, workers = load_configured_detector(
                self.settings, intra_op_threads=self.intra_op_threads, notify=lambda m: self._emit(EngineBuilding(m))
            )
            self.params = replace(self.params, workers=workers)
            model = model_used(self.detector)
            if model.warning is not None:
                log.warning("gpu fallback", extra={"provider": model.provider, "reason": model.fallback_reason})
            self._emit(ModelLoaded(model))
        return self.detector

    def _append(self, draft: LogLineDraft, tag: str) -> WrittenLogLine:
        return self.writer.append("videos", draft, slug=tag)

    @staticmethod
    def _source(sha256: str, path: Path) -> dict[str, str]:
        return {"type": "video", "id": sha256, "path": str(path), "sha256": sha256}

    # -- passes ------------------------------------------------------------------------------------

    def recover_orphans(self) -> None:
        """Rows a killed run left ``processing`` whose file is no longer where the row says."""
        for row in self.db.with_status(VideoStatus.PROCESSING):
            if row.path.is_file():
                if row.path.parent == self.layout.input:
                    continue  # discovery finds it by content and retries it
                # A --reprocess of an archived video died: the video stays done, due for reprocessing.
                self.db.mark_stale(row.sha256, note="a reprocess was interrupted; run --reprocess again")
                continue
            self.db.mark_lost(
                row.sha256, note=f"{row.name} disappeared from {row.path.parent} while it was being processed"
            )

    def run_pass(self, *, first: bool) -> None:
        if first:
            self.recover_orphans()
        candidates = list_videos(self.layout.input, self.settings.video_extensions)
        now = self.clock().timestamp()
        ready = [c for c in candidates if self.settle.settled(c, now_wall=now)]
        self.waiting = len(candidates) - len(ready)
        redo = self._reprocess_rows() if first and self.reprocess else []
        total = len(ready) + len(redo)
        for position, candidate in enumerate(ready, start=1):
            if self.stop.is_set():
                return
            self._handle_input(candidate, position, total)
            self.settle.forget(candidate.path)
        for position, row in enumerate(redo, start=len(ready) + 1):
            if self.stop.is_set():
                return
            self._analyse(row.path, row.sha256, row.size, position=position, total=total, in_place=True)

    def _reprocess_rows(self) -> list[VideoRow]:
        return [
            row
            for row in self.db.with_status(VideoStatus.DONE)
            if row.config_hash != self.config_hash and row.path.is_file()
        ]

    def _handle_input(self, candidate: Candidate, position: int, total: int) -> None:
        path = candidate.path
        sha = _sha256_or_none(path)
        if sha is None:
            return
        row = self.db.get(sha)
        if row is None:
            row = self.db.add(sha, path.name, path, candidate.size)
        if row.status in (VideoStatus.DONE, VideoStatus.QUARANTINED):
            if row.path != path and not row.path.exists() and row.removed_at is None:
                # Killed after the state update, before the move: the records exist, only the move is left.
                # (A file that cleanup removed is not missing: the same content again is a duplicate.)
                durable_move(path, row.path)
                self._record(VideoResult(row.name, sha, Outcome.RECOVERED, destination=row.path, attempts=row.attempts))
                return
            self._duplicate(path, sha, candidate.size, row)
            return
        if row.attempts >= self.settings.max_attempts and row.status in (VideoStatus.PROCESSING, VideoStatus.FAILED):
            # PROCESSING: the process died in each attempt. FAILED: each attempt ended in an error that is
            # not the file's reason code (an internal error), or max_attempts was lowered since.
            reason = row.reason if row.status is VideoStatus.FAILED and row.reason in REASONS else "crashed"
            how = "killed or crashed" if row.status is VideoStatus.PROCESSING else (row.error or "failed")
            message = (
                f"analysing this video failed {row.attempts} times (last: {how}); "
                "it is set aside so it cannot block the backlog"
            )
            self._quarantine(path, sha, candidate.size, reason=reason, message=message, attempts=row.attempts)
            return
        self._analyse(path, sha, candidate.size, position=position, total=total, in_place=False)

    # -- outcomes ----------------------------------------------------------------------------------

    def _duplicate(self, path: Path, sha: str, size: int, row: VideoRow) -> None:
        tag = output_tag(path, sha)
        if row.status is VideoStatus.DONE:
            destination = free_destination(self.layout.processed, path.name, sha)
            written = self._append(
                LogLineDraft(
                    who=WHO,
                    did="skipped a duplicate video",
                    this=(
                        f"{path.name} has the same content as {row.name} (sha256 {sha[:12]}), analysed before; "
                        "archived without a second analysis"
                    ),
                    status="skipped",
                    source=self._source(sha, destination),
                ),
                tag,
            )
            durable_move(path, destination)
            self._record(VideoResult(path.name, sha, Outcome.DUPLICATE, destination, logline=written.path))
            return
        reason = row.reason if row.reason in REASONS else "unreadable"
        message = f"same content as {row.name}, quarantined before: {row.error or reason}"
        self._quarantine(path, sha, size, reason=reason, message=message, attempts=0, duplicate_of=row.name)

    def _quarantine(
        self,
        path: Path,
        sha: str,
        size: int,
        *,
        reason: str,
        message: str,
        attempts: int,
        duplicate_of: str | None = None,
    ) -> VideoResult:
        record = write_error_record(
            self.layout.corrupted,
            path,
            sha256=sha,
            size=size,
            reason=reason,
            message=message,
            attempts=attempts,
            duplicate_of=duplicate_of,
            clock=self.clock,
        )
        written = self._append(
            LogLineDraft(
                who=WHO,
                did="quarantined a video",
                this=f"{path.name}: {reason}: {message}",
                status="quarantined",
                source=self._source(sha, record.destination),
                if_not=f"see {record.error_path.name} in corrupted/",
            ),
            output_tag(path, sha),
        )
        if duplicate_of is None:
            self.db.finish_quarantined(
                sha, destination=record.destination, reason=reason, error=message, logline_path=written.path
            )
        durable_move(path, record.destination)
        return self._record(
            VideoResult(
                path.name,
                sha,
                Outcome.QUARANTINED,
                record.destination,
                reason=reason,
                message=message,
                attempts=attempts,
                logline=written.path,
            )
        )

    def _analyse(self, path: Path, sha: str, size: int, *, position: int, total: int, in_place: bool) -> None:
        detector = self._load_detector()  # before the attempt is counted: a model problem is not the video's
        started = time.monotonic()
        deadline = started + self.settings.max_video_seconds
        row = self.db.begin_attempt(sha, path, config_hash=self.config_hash, model_sha256=self.settings.model_sha256)
        committed = False
        try:
            try:
                info = probe(path)
                self._emit(VideoStarted(path.name, position, total, self._expected(info), info.duration_s))
                scan = scan_video(
                    path,
                    sha256=sha,
                    detector=detector,
                    params=self.params,
                    deadline=deadline,
                    should_stop=self.stop.is_set,
                    on_progress=self._scan_progress,
                    clock=self.clock,
                    info=info,
                )
            except VideoError as exc:
                self._quarantine(path, sha, size, reason=exc.reason, message=exc.message, attempts=row.attempts)
                return
            except ScanTimeout as exc:
                self._timed_out(path, sha, size, row, exc, time.monotonic() - started)
                return
            committed = self._finish_done(path, sha, row, scan.document, in_place=in_place)
        except ScanStopped:
            self.db.undo_attempt(sha, note="stopped on request before it finished")
            self.interrupted = True
            self._record(VideoResult(path.name, sha, Outcome.INTERRUPTED, attempts=row.attempts - 1))
            raise _StopRun from None
        except (VVError, KeyboardInterrupt) as exc:
            # Disk full, key store, model runtime, Ctrl-C: the environment failed, not the video.
            if not committed:
                self.db.undo_attempt(sha, note=f"run stopped: {exc}")
            raise
        except BaseException as exc:
            # A bug: counted, so a video that always triggers it is quarantined after max_attempts runs.
            if not committed:
                self.db.record_failure(sha, reason="error", error=f"internal error {type(exc).__name__}: {exc}")
            raise

    def _expected(self, info: VideoInfo) -> int | None:
        if info.duration_s is None:
            return None
        return max(1, math.floor(info.duration_s / self.settings.sample_interval_s) + 1)

    def _scan_progress(self, event: ScanProgress) -> None:
        self._emit(VideoProgress(event.name, event.frames_sampled, event.media_time_s, event.elapsed_s))

    def _timed_out(self, path: Path, sha: str, size: int, row: VideoRow, exc: ScanTimeout, wall: float) -> None:
        limit = self.settings.max_video_seconds
        if row.attempts >= self.settings.max_attempts:
            message = f"analysis ran past max_video_seconds ({limit:g} s) in each of {row.attempts} attempts"
            self._quarantine(path, sha, size, reason="timeout", message=message, attempts=row.attempts)
            return
        message = f"{exc.message} ({limit:g} s); attempt {row.attempts} of {self.settings.max_attempts}"
        self.db.record_failure(sha, reason="timeout", error=message, duration_s=wall)
        written = self._append(
            LogLineDraft(
                who=WHO,
                did="gave up an analysis attempt",
                this=f"{path.name}: {message}",
                status="failed",
                source=self._source(sha, path),
                if_not="retried by the next run; quarantined after max_attempts",
            ),
            output_tag(path, sha),
        )
        self._record(
            VideoResult(
                path.name,
                sha,
                Outcome.FAILED,
                reason="timeout",
                message=message,
                attempts=row.attempts,
                wall_s=wall,
                logline=written.path,
            )
        )

    def _finish_done(self, path: Path, sha: str, row: VideoRow, analytic: dict[str, Any], *, in_place: bool) -> bool:
        tag = output_tag(path, sha)
        analytic_path = self.layout.analytic / f"{tag}.analytic.json"
        summary_path = self.layout.summaries / f"{tag}.summary.json"
        validate(analytic, ANALYTIC_SCHEMA)
        atomic_write_json(analytic_path, analytic)
        summary = summarize(analytic, self.settings.status_rules, analytic_name=analytic_path.name)
        validate(summary, SUMMARY_SCHEMA)
        atomic_write_json(summary_path, summary)
        destination = path if in_place else free_destination(self.layout.processed, path.name, sha)
        written = self._append(
            LogLineDraft(
                who=WHO,
                did="analysed a video",
                this=str(summary["text"]),
                status="ok",
                source=self._source(sha, destination),
                if_ok=f"summary in summaries/{summary_path.name}",
            ),
            tag,
        )
        timings = analytic["timings"]
        self.db.finish_done(
            sha,
            destination=destination,
            analytic_path=analytic_path,
            summary_path=summary_path,
            logline_path=written.path,
            duration_s=float(timings["wall_s"]),
        )
        if destination != path:
            durable_move(path, destination)
        self._record(
            VideoResult(
                path.name,
                sha,
                Outcome.DONE,
                destination,
                status=str(summary["status"]),
                text=str(summary["text"]),
                attempts=row.attempts,
                frames_sampled=int(analytic["sampling"]["frames_sampled"]),
                media_s=float(analytic["source"]["duration_s"]),
                wall_s=float(timings["wall_s"]),
                analytic=analytic_path,
                summary=summary_path,
                logline=written.path,
            )
        )
        return True

    # -- the job's own record ----------------------------------------------------------------------

    def counts(self, results: list[VideoResult] | None = None) -> dict[str, int]:
        tally = Counter(r.outcome.value for r in (self.results if results is None else results))
        return {outcome.value: tally.get(outcome.value, 0) for outcome in Outcome}

    def describe(self, results: list[VideoResult], *, backlog: int | None, prefix: str) -> str:
        counts = self.counts(results)
        parts = [f"{counts[o.value]} {o.value}" for o in Outcome if counts[o.value]]
        handled = ", ".join(parts) if parts else "no video to process"
        if backlog is None:
            return f"{prefix}: {handled}; the rest stays in input/"
        return f"{prefix}: {handled}; {backlog} video file(s) left in input/ ({self.waiting} still settling)"

    def job_status(self, results: list[VideoResult]) -> JobStatus:
        counts = self.counts(results)
        if self.interrupted:
            return JobStatus.INTERRUPTED
        if counts[Outcome.QUARANTINED.value] or counts[Outcome.FAILED.value]:
            return JobStatus.WARNING
        return JobStatus.OK

    def append_job_logline(self, run_id: int, status: JobStatus, this: str) -> WrittenLogLine:
        logline_status = {
            JobStatus.OK: "ok",
            JobStatus.WARNING: "warning",
            JobStatus.INTERRUPTED: "warning",
            JobStatus.FAILED: "failed",
            JobStatus.KILLED: "failed",
            JobStatus.RUNNING: "warning",
        }[status]
        return self.writer.append(
            "jobs",
            LogLineDraft(
                who=WHO,
                did="ran the video pipeline",
                this=this,
                status=logline_status,
                source={"type": "job", "id": f"{JOB}-{run_id}"},
            ),
            slug=f"{JOB}-{run_id}",
        )


def orchestrate(
    settings: Settings,
    *,
    mode: Mode = Mode.ONCE,
    interval_s: float = 10.0,
    reprocess: bool = False,
    stop: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
    clock: Clock = utcnow,
    intra_op_threads: int | None = None,
) -> OrchestrateReport:
    """Process the backlog once (``Mode.ONCE``) or keep watching ``input/`` until ``stop`` is set.

    Raises :class:`~vvctl.core.errors.LockedError` at once when another orchestrate holds the lock and
    :class:`~vvctl.core.errors.StorageError` when the disk fills up (the run stops; nothing is lost).
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    stop = threading.Event() if stop is None else stop
    layout = check_layout(settings)
    configure_file_logging(
        layout.logs, level=settings.log_level, max_bytes=settings.log_max_bytes, backups=settings.log_backups
    )
    started_at = clock()
    with exclusive_lock(layout.lock(JOB), what="vvctl orchestrate"):
        for directory in _output_dirs(layout):
            remove_stale_temps(directory)
        writer = LogLineWriter(settings, clock=clock)
        # Fail before any analysis when the results could not be signed (missing or unsafe key store):
        # an hour of inference would otherwise be thrown away at the first LogLine.
        load_keystore(writer.key_store)
        with VideoStateStore(layout.state_db, clock=clock) as db:
            db.close_dead_jobs(JOB)
            run_id = db.start_job(JOB)
            run = _Run(
                settings,
                layout,
                db,
                writer,
                reprocess=reprocess,
                stop=stop,
                on_progress=on_progress,
                clock=clock,
                intra_op_threads=intra_op_threads,
            )
            job_loglines: list[Path] = []
            passes = 0
            try:
                while True:
                    passes += 1
                    before = len(run.results)
                    try:
                        run.run_pass(first=passes == 1)
                    except _StopRun:
                        break
                    handled = run.results[before:]
                    if mode is Mode.ONCE or stop.is_set():
                        break
                    if handled:
                        backlog = len(list_videos(layout.input, settings.video_extensions))
                        this = run.describe(handled, backlog=backlog, prefix=f"watch pass {passes}")
                        job_loglines.append(run.append_job_logline(run_id, run.job_status(handled), this).path)
                    if stop.wait(interval_s):
                        break
            except BaseException as exc:
                _close_failed_run(run, db, run_id, exc)
                raise
            backlog = len(list_videos(layout.input, settings.video_extensions))
            status = run.job_status(run.results)
            prefix = "run" if mode is Mode.ONCE else f"watch stopped after {passes} passes"
            summary = run.describe(run.results, backlog=backlog, prefix=prefix)
            try:
                job_loglines.append(run.append_job_logline(run_id, status, summary).path)
            except VVError as exc:
                # Every video is handled; only the job's own record failed (disk full): say so in the DB.
                db.finish_job(run_id, JobStatus.FAILED, f"{summary}; the job LogLine was not written: {exc.message}")
                raise
            db.finish_job(run_id, status, summary)
    return _report(layout, mode, run, started_at, clock(), passes, backlog, run_id, status, job_loglines)


def _output_dirs(layout: StorageLayout) -> list[Path]:
    """Where a killed run may have left temp files (only those of dead writers are removed)."""
    fixed = [layout.input, layout.processed, layout.corrupted, layout.analytic, layout.summaries]
    try:
        logs = sorted(p for p in layout.loglines.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError as exc:
        raise StorageError(f"cannot list {layout.loglines}: {exc.strerror or exc}") from exc
    return fixed + logs


def _close_failed_run(run: _Run, db: VideoStateStore, run_id: int, exc: BaseException) -> None:
    """Best effort: record why the run stopped, in the job log and the state DB, then let ``exc`` go on."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    status = JobStatus.INTERRUPTED if interrupted else JobStatus.FAILED
    reason = "interrupted" if interrupted else (exc.message if isinstance(exc, VVError) else type(exc).__name__)
    summary = run.describe(run.results, backlog=None, prefix=f"run stopped ({reason})")
    try:
        run.append_job_logline(run_id, status, summary)
    except VVError as logline_error:
        # With the disk full the record itself may not fit; the state DB row below still tells.
        log.error("could not append the job LogLine", extra={"error": logline_error.message})
    try:
        db.finish_job(run_id, status, summary)
    except StorageError as db_error:
        log.error("could not close the job run", extra={"error": db_error.message})


def _report(
    layout: StorageLayout,
    mode: Mode,
    run: _Run,
    started_at: datetime,
    finished_at: datetime,
    passes: int,
    backlog: int,
    run_id: int,
    status: JobStatus,
    job_loglines: list[Path],
) -> OrchestrateReport:
    analysed = [r for r in run.results if r.outcome is Outcome.DONE]
    frames = sum(r.frames_sampled for r in analysed)
    media = sum(r.media_s for r in analysed)
    wall = sum(r.wall_s for r in analysed)
    model = None if run.detector is None else model_used(run.detector)
    warnings = [] if model is None or model.warning is None else [model.warning]
    return OrchestrateReport(
        mode=mode,
        storage_root=layout.root,
        started_at=started_at,
        finished_at=finished_at,
        passes=passes,
        videos=list(run.results),
        counts=run.counts(),
        waiting=run.waiting,
        backlog=backlog,
        stopped=run.stop.is_set(),
        interrupted=run.interrupted,
        model=model,
        job_run_id=run_id,
        job_status=status.value,
        job_loglines=job_loglines,
        frames_sampled=frames,
        media_s=round(media, 3),
        analysis_s=round(wall, 3),
        sampled_fps=round(frames / wall, 2) if wall > 0 else 0.0,
        realtime_factor=round(media / wall, 2) if wall > 0 else 0.0,
        warnings=warnings,
    )
