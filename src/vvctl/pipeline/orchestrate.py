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

A kill (or a full disk) between appending the ``ok`` LogLine and recording it in the state database
leaves a signed record the database does not know of: the next run finds it (newest records first,
back to the start of that attempt) and adopts it instead of analysing again, so a video has exactly
one ``ok`` record.

A full disk is never the video's fault: the run holds a reserve of disk space
(:class:`~vvctl.core.reserve.SpaceReserve`) and frees it when a write fails with ENOSPC, so that giving
the attempt back, the job's LogLine and its row still fit; then it stops with exit 6.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from vvctl.core.atomic import atomic_write_json, durable_move, remove_stale_temps
from vvctl.core.detectors import Detector, load_detector
from vvctl.core.errors import ConfigError, StorageError, VVError
from vvctl.core.hardware import has_gpu
from vvctl.core.hashing import sha256_file
from vvctl.core.jobs import JobContext, JobOutcome, JobSpec, run_job
from vvctl.core.layout import StorageLayout, check_storage_root
from vvctl.core.logline import LogLineDraft, LogLineWriter, WrittenLogLine, log_directory, scan_log_files
from vvctl.core.names import display, fit
from vvctl.core.providers import GPU_PROVIDERS, GpuOptions
from vvctl.core.reserve import SpaceReserve
from vvctl.core.schemas import validate
from vvctl.core.settings import Settings
from vvctl.core.state import is_disk_full
from vvctl.core.timeutil import Clock, parse_rfc3339, rfc3339, utcnow
from vvctl.core.video import VideoError, VideoInfo, probe
from vvctl.ops.report import publish_day, zone
from vvctl.pipeline.discovery import (
    Candidate,
    SettleTracker,
    free_destination,
    list_videos,
    relative_folder,
    scan_input,
)
from vvctl.pipeline.identity import PatternError, SourceIdentity, check_patterns, identify
from vvctl.pipeline.quarantine import (
    REASONS,
    error_path_for,
    original_name,
    read_record,
    records,
    video_path_for,
    write_error_record,
)
from vvctl.pipeline.scan import (
    ScanParams,
    ScanProgress,
    ScanStopped,
    ScanTimeout,
    gpu_fell_back,
    inference_plan,
    scan_video,
)
from vvctl.pipeline.snapshots import pick, take_snapshots
from vvctl.pipeline.summarize import summarize
from vvctl.pipeline.videostate import JobStatus, VideoRow, VideoStateStore, VideoStatus

if TYPE_CHECKING:
    from vvctl.pipeline.distributed import Executor

log = logging.getLogger("vvctl.orchestrate")

JOB = "orchestrate"
WHO = "vvctl orchestrate"
SPEC = JobSpec(JOB, "ran the video pipeline", WHO)
DID_ANALYSED = "analysed a video"
ANALYTIC_SCHEMA = "analytic.schema.json"
SUMMARY_SCHEMA = "summary.schema.json"
REQUIRED_DIRS = ("input", "processed", "corrupted", "analytic", "summaries", "loglines", "state")
TRANSIENT_REASONS = frozenset({"timeout", "crashed", "unreadable"})
"""Quarantine reasons that say nothing about the content: a copy of such a video is analysed again."""


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
    """A killed (or disk-full) run had analysed and recorded this video: only the state and the move were left."""
    REQUEUED = "requeued"
    """A quarantined video given another chance: moved back to ``input/`` by hand, a copy of one set aside
    for a transient reason, or one that was still growing in ``corrupted/`` (given back to ``input/``)."""
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
    summary: str = ""
    """The run in one line, as recorded in the job-run row and the run's LogLine."""

    @property
    def outcome(self) -> JobOutcome:
        """Warning when a video was quarantined or an attempt failed (findings: exit 1 in ``--once``)."""
        if self.counts.get(Outcome.QUARANTINED.value) or self.counts.get(Outcome.FAILED.value):
            return JobOutcome.WARNING
        return JobOutcome.OK

    skipped: dict[str, int] = field(default_factory=dict)
    """Files under ``input/`` left out at the last pass, by reason (hidden, temporary, symlink, too_deep,
    not_video, unreadable): never silently ignored."""
    reports: list[Path] = field(default_factory=list)
    """Day reports (HTML) rebuilt by this run."""


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
        "presence_gap_s": settings.presence_gap_s,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


OUTPUT_SUFFIX_ROOM = len(".analytic.json")


def output_tag(video: Path, sha256: str | None) -> str:
    """``<stem>.<sha8>``: the name shared by a video's analytic, summary and LogLine files.

    Always valid text that fits with its suffix in NAME_MAX bytes, whatever the video's name
    (:func:`vvctl.core.names.fit`, :func:`vvctl.core.names.display`)."""
    return fit(display(video.stem), f".{(sha256 or 'unread')[:8]}", limit=255 - OUTPUT_SUFFIX_ROOM)


def check_layout(settings: Settings) -> StorageLayout:
    layout = StorageLayout(check_storage_root(settings.storage_root))
    for name in REQUIRED_DIRS:
        if not (layout.root / name).is_dir():
            raise StorageError(
                f"storage root {layout.root} is not set up ({name}/ is missing); run 'vvctl bootstrap' first"
            )
    return layout


def _sha256_or_none(path: Path) -> str | None:
    """Content hash, or None when the file vanished since it was listed (moved away by someone else).

    A file that cannot be read (permissions, an I/O error) is that file's failure, not the run's:
    :class:`VideoError` ``unreadable``, so it is quarantined and the run goes on.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VideoError("unreadable", f"{display(path.name)}: cannot read: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def find_recorded_ok(loglines: Path, sha256: str, since: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest ``ok`` "analysed a video" LogLine for ``sha256`` written at or after ``since``, or None.

    Reads the ``videos`` log from its head backwards and stops at the first record older than ``since``
    (the start of the attempt that may have written it), so it costs a few file reads.
    """
    start = parse_rfc3339(since)
    files = scan_log_files(loglines)
    for seq in sorted(files, reverse=True):
        for path in files[seq]:
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict):
                continue
            try:
                if parse_rfc3339(str(record.get("when"))) < start:
                    return None
            except ValueError:
                continue
            source = record.get("source")
            if (
                record.get("status") == "ok"
                and record.get("did") == DID_ANALYSED
                and isinstance(source, dict)
                and source.get("id") == sha256
            ):
                return path, record
    return None


def _place(analytic: dict[str, Any], identity: SourceIdentity, path: str, folder: Path) -> None:
    """Add where the video is kept, its camera and wall-clock start, and each detection's UTC time."""
    source = analytic["source"]
    source["path"] = path
    source["relative_dir"] = folder.as_posix()
    source["camera"] = identity.camera
    source["start_at"] = rfc3339(identity.start)
    source["time_source"] = identity.time_source.value
    for detection in analytic["detections"]:
        detection["at"] = rfc3339(identity.start + timedelta(seconds=float(detection["t"])))


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
        reserve: SpaceReserve,
        executor: Executor | None = None,
    ) -> None:
        from vvctl.pipeline.distributed import executor_for

        self.settings = settings
        self.reserve = reserve
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
        self.skipped: dict[str, int] = {}
        self.days: dict[date, list[tuple[Path, dict[str, Any]]]] = {}
        """Summaries written in this pass, by calendar day (``source_timezone``): those days' reports are updated."""
        self.reports: list[Path] = []
        try:
            check_patterns(settings.source_path_patterns)
        except PatternError as exc:
            raise ConfigError(str(exc)) from None
        self.zone: ZoneInfo = zone(settings)
        # Where videos are analysed: None in this process (the default), else workers (distributed.py).
        self.executor = executor if executor is not None else executor_for(settings, self.params)
        self.remote_model: ModelUsed | None = None

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()

    def model_used(self) -> ModelUsed | None:
        if self.remote_model is not None:
            return self.remote_model
        return None if self.detector is None else model_used(self.detector)

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

    def _relative(self, path: Path) -> str:
        """``path`` relative to storage_root (as outputs name files), or as it is when outside it."""
        try:
            return display(path.relative_to(self.layout.root).as_posix())
        except ValueError:
            return display(str(path))

    def _source(self, sha256: str | None, path: Path) -> dict[str, str]:
        if sha256 is None:  # content never read: the record names the file instead
            return {"type": "video", "id": f"unread:{display(path.name)}"[:1024], "path": self._relative(path)}
        return {"type": "video", "id": sha256, "path": self._relative(path), "sha256": sha256}

    def _archive_path(self, path: Path, sha: str | None) -> Path:
        """Where a video from ``input/`` goes in ``processed/``: the same relative folder, a free name."""
        folder = self.layout.processed / relative_folder(path, self.layout.input)
        folder.mkdir(parents=True, exist_ok=True)
        return free_destination(folder, path.name, sha)

    def _output_folder(self, path: Path) -> Path:
        """The relative folder a video's outputs are kept in (mirrors input/, or processed/ on --reprocess)."""
        base = self.layout.processed if path.is_relative_to(self.layout.processed) else self.layout.input
        folder = relative_folder(path, base)
        return Path(*(display(part) for part in folder.parts)) if folder.parts else folder

    def publish_reports(self) -> None:
        """Rebuild the day index, HTML report and playlist of each day a video of this pass started on."""
        if not self.settings.daily_report:
            self.days.clear()
            return
        for day, summaries in sorted(self.days.items()):
            built = publish_day(self.settings, self.layout, day, clock=self.clock, new=summaries)
            if built.html not in self.reports:
                self.reports.append(built.html)
        self.days.clear()

    def disk_full(self, exc: BaseException) -> None:
        """A write failed: if the disk is full, free the reserve so the bookkeeping that follows fits."""
        if is_disk_full(exc):
            self.reserve.release()

    # -- passes ------------------------------------------------------------------------------------

    def recover_orphans(self) -> None:
        """Rows a killed run left ``processing`` whose file is no longer where the row says."""
        quarantined: dict[str, Path] | None = None
        for row in self.db.with_status(VideoStatus.PROCESSING, VideoStatus.PENDING, VideoStatus.FAILED):
            if row.status is not VideoStatus.PROCESSING and (row.path.is_file() or row.started_at is None):
                continue
            if row.path.is_file():
                if row.path.is_relative_to(self.layout.input):
                    continue  # discovery finds it by content and retries it
                # A --reprocess of an archived video died: the video stays done, due for reprocessing.
                self.db.mark_stale(row.sha256, note="a reprocess was interrupted; run --reprocess again")
                continue
            if quarantined is None:
                quarantined = self._quarantined_by_sha()
            moved = quarantined.get(row.sha256)
            if moved is not None:
                # Killed after moving it to corrupted/ (its record and LogLine are written): finish the row.
                record = read_record(error_path_for(moved)) or {}
                self.db.finish_quarantined(
                    row.sha256,
                    destination=moved,
                    reason=str(record.get("reason", "crashed")),
                    error=str(record.get("message", "quarantined")),
                    logline_path=None,
                )
                continue
            if row.status is not VideoStatus.PROCESSING:
                continue
            self.db.mark_lost(
                row.sha256,
                note=f"{display(row.name)} disappeared from {row.path.parent} while it was being processed",
            )

    def _quarantined_by_sha(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for error_path in records(self.layout.corrupted):
            record = read_record(error_path)
            video = video_path_for(error_path)
            if record is not None and video.is_file():
                sha = record.get("video", {}).get("sha256")
                if isinstance(sha, str):
                    found[sha] = video
        return found

    def give_back_growing(self) -> None:
        """Quarantined files that changed after they were set aside (a stalled upload that went on, into
        ``corrupted/``) go back to ``input/``: their content was never final, so the verdict is void."""
        for error_path in records(self.layout.corrupted):
            video = video_path_for(error_path)
            try:
                grown = video.stat().st_mtime_ns > error_path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if not grown:
                continue
            record = read_record(error_path)
            if record is None or record.get("video", {}).get("size") == video.stat().st_size:
                continue
            old_sha = record["video"].get("sha256")
            name = original_name(record, video)
            target = free_destination(self.layout.input, name, None)
            written = self._append(
                LogLineDraft(
                    who=WHO,
                    did="gave back a quarantined video that was still being written",
                    this=(
                        f"{display(video.name)} grew from {record['video'].get('size')} to {video.stat().st_size} "
                        f"bytes after it was quarantined ({record.get('reason')}); back in input/ as "
                        f"{display(target.name)}"
                    ),
                    status="warning",
                    source=self._source(old_sha if isinstance(old_sha, str) else None, target),
                ),
                output_tag(target, old_sha if isinstance(old_sha, str) else None),
            )
            durable_move(video, target)
            error_path.unlink(missing_ok=True)
            if isinstance(old_sha, str):
                row = self.db.get(old_sha)
                if row is not None and row.status is VideoStatus.QUARANTINED:
                    self.db.forget(old_sha)  # that content no longer exists anywhere
            self._record(
                VideoResult(
                    display(target.name),
                    old_sha if isinstance(old_sha, str) else "",
                    Outcome.REQUEUED,
                    target,
                    reason=str(record.get("reason")),
                    message="it was still being written; given back to input/",
                    logline=written.path,
                )
            )

    def run_pass(self, *, first: bool) -> None:
        if first:
            self.recover_orphans()
        self.give_back_growing()
        intake = scan_input(self.layout.input, self.settings.video_extensions, max_depth=self.settings.input_max_depth)
        candidates = intake.candidates
        if intake.skipped != self.skipped and intake.skipped:
            log.info("files skipped in input/", extra={"skipped": intake.skipped})
        self.skipped = intake.skipped
        now = self.clock().timestamp()
        ready = [c for c in candidates if self.settle.settled(c, now_wall=now)]
        self.waiting = len(candidates) - len(ready)
        redo = self._reprocess_rows() if first and self.reprocess else []
        total = len(ready) + len(redo)
        if self.executor is not None:
            from vvctl.pipeline.distributed import run_remote_pass

            run_remote_pass(self, ready, redo)
            self.publish_reports()
            return
        for position, candidate in enumerate(ready, start=1):
            if self.stop.is_set():
                return
            self._handle_input(candidate, position, total)
            self.settle.forget(candidate.path)
            if self.stop.is_set():
                self.publish_reports()
        for position, row in enumerate(redo, start=len(ready) + 1):
            if self.stop.is_set():
                return
            self._analyse(row.path, row.sha256, row.size, position=position, total=total, in_place=True)
        self.publish_reports()

    def _reprocess_rows(self) -> list[VideoRow]:
        return [
            row
            for row in self.db.with_status(VideoStatus.DONE)
            if row.config_hash != self.config_hash and row.path.is_file()
        ]

    def _handle_input(self, candidate: Candidate, position: int, total: int) -> None:
        path = candidate.path
        try:
            sha = _sha256_or_none(path)
        except VideoError as exc:
            # Cannot even be read: set aside with what is known (no content hash), never blocking the rest.
            self._quarantine(path, None, candidate.size, reason=exc.reason, message=exc.message, attempts=0)
            return
        if sha is None:
            return
        row = self.db.get(sha)
        if row is None:
            row = self.db.add(sha, path.name, path, candidate.size)
        if row.status is VideoStatus.DONE:
            if row.path != path and not row.path.exists() and row.removed_at is None:
                # Killed after the state update, before the move: the records exist, only the move is left.
                # (A file that cleanup removed is not missing: the same content again is a duplicate.)
                durable_move(path, row.path)
                self._record(
                    VideoResult(display(row.name), sha, Outcome.RECOVERED, destination=row.path, attempts=row.attempts)
                )
                return
            self._duplicate(path, sha, candidate.size, row)
            return
        if row.status is VideoStatus.QUARANTINED:
            if row.path.exists() and row.reason not in TRANSIENT_REASONS:
                self._duplicate(path, sha, candidate.size, row)  # the same bad content: same verdict
                return
            # Moved back from corrupted/ by hand, or a copy of a video set aside for a cause that was not
            # its content (a timeout, a crash): an operator's retry.
            how = "moved back to input/" if not row.path.exists() else "a copy arrived in input/"
            self._requeue(path, sha, row, how=how)
            row = self.db.require(sha)
        if row.started_at is not None and row.status is not VideoStatus.DONE and self._adopt_recorded(path, sha, row):
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

    def _requeue(self, path: Path, sha: str, row: VideoRow, *, how: str) -> None:
        """Record (LogLine first) that a quarantined video gets a new chance, then reset its row."""
        written = self._append(
            LogLineDraft(
                who=WHO,
                did="re-queued a quarantined video",
                this=(
                    f"{display(path.name)}: {how}; it was quarantined as {display(row.name)} ({row.reason}): "
                    "analysed again with its attempts reset"
                ),
                status="ok",
                source=self._source(sha, path),
            ),
            output_tag(path, sha),
        )
        if not row.path.exists():
            error_path_for(row.path).unlink(missing_ok=True)  # its record went with the video's quarantine
        self.db.requeue(sha, path, note=f"re-queued: {how}")
        self._record(
            VideoResult(display(path.name), sha, Outcome.REQUEUED, reason=row.reason, message=how, logline=written.path)
        )

    def _adopt_recorded(self, path: Path, sha: str, row: VideoRow) -> bool:
        """An earlier attempt analysed this video and signed its ``ok`` LogLine but was killed (or hit a full
        disk) before the state database knew: finish that attempt instead of analysing and signing again."""
        assert row.started_at is not None
        found = find_recorded_ok(log_directory(self.layout, "videos"), sha, row.started_at)
        if found is None:
            return False
        logline_path, record = found
        tag = output_tag(path, sha)
        folder = self._output_folder(path)
        analytic_path = self.layout.analytic / folder / f"{tag}.analytic.json"
        summary_path = self.layout.summaries / folder / f"{tag}.summary.json"
        try:
            analytic = json.loads(analytic_path.read_bytes())
            summary = json.loads(summary_path.read_bytes())
        except (OSError, ValueError):
            return False  # the outputs it vouches for are gone: analyse again
        destination = self._archive_path(path, sha)
        self.db.finish_done(
            sha,
            destination=destination,
            analytic_path=analytic_path,
            summary_path=summary_path,
            logline_path=logline_path,
            duration_s=float(analytic["timings"]["wall_s"]),
        )
        durable_move(path, destination)
        self._record(
            VideoResult(
                display(path.name),
                sha,
                Outcome.RECOVERED,
                destination,
                status=str(summary.get("status")),
                text=str(summary.get("text")),
                attempts=row.attempts,
                message=f"analysed and recorded by an earlier run ({logline_path.name}); finished, not redone",
                analytic=analytic_path,
                summary=summary_path,
                logline=logline_path,
            )
        )
        del record
        return True

    # -- outcomes ----------------------------------------------------------------------------------

    def _duplicate(self, path: Path, sha: str, size: int, row: VideoRow) -> None:
        tag = output_tag(path, sha)
        if row.status is VideoStatus.DONE:
            destination = self._archive_path(path, sha)
            written = self._append(
                LogLineDraft(
                    who=WHO,
                    did="skipped a duplicate video",
                    this=(
                        f"{display(path.name)} has the same content as {display(row.name)} (sha256 {sha[:12]}), "
                        "analysed before; archived without a second analysis"
                    ),
                    status="skipped",
                    source=self._source(sha, destination),
                ),
                tag,
            )
            durable_move(path, destination)
            self._record(VideoResult(display(path.name), sha, Outcome.DUPLICATE, destination, logline=written.path))
            return
        reason = row.reason if row.reason in REASONS else "unreadable"
        message = f"same content as {display(row.name)}, quarantined before: {row.error or reason}"
        self._quarantine(path, sha, size, reason=reason, message=message, attempts=0, duplicate_of=row.name)

    def _quarantine(
        self,
        path: Path,
        sha: str | None,
        size: int,
        *,
        reason: str,
        message: str,
        attempts: int,
        duplicate_of: str | None = None,
    ) -> VideoResult:
        """Record, sign, move, then update the row: a kill before the move leaves the video in ``input/``
        (analysed again), after it the next run finds its record in ``corrupted/`` and finishes the row."""
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
                this=f"{display(path.name)}: {reason}: {message}",
                status="quarantined",
                source=self._source(sha, record.destination),
                if_not=f"see {display(record.error_path.name)} in corrupted/",
            ),
            output_tag(path, sha),
        )
        durable_move(path, record.destination)
        if duplicate_of is None and sha is not None:
            self.db.finish_quarantined(
                sha, destination=record.destination, reason=reason, error=message, logline_path=written.path
            )
        return self._record(
            VideoResult(
                display(path.name),
                sha or "",
                Outcome.QUARANTINED,
                record.destination,
                reason=reason,
                message=message,
                attempts=attempts,
                logline=written.path,
            )
        )

    def _analyse(self, path: Path, sha: str, size: int, *, position: int, total: int, in_place: bool) -> None:
        if self.executor is not None:
            from vvctl.pipeline.distributed import analyse_one

            analyse_one(self, path, sha, size, position=position, total=total, in_place=in_place)
            return
        detector = self._load_detector()  # before the attempt is counted: a model problem is not the video's
        started = time.monotonic()
        deadline = started + self.settings.max_video_seconds
        row = self.db.begin_attempt(sha, path, config_hash=self.config_hash, model_sha256=self.settings.model_sha256)
        committed = False
        try:
            try:
                info = probe(path)
                self._emit(VideoStarted(display(path.name), position, total, self._expected(info), info.duration_s))
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
            self._record(VideoResult(display(path.name), sha, Outcome.INTERRUPTED, attempts=row.attempts - 1))
            raise _StopRun from None
        except (VVError, KeyboardInterrupt) as exc:
            # Disk full, key store, model runtime, Ctrl-C: the environment failed, not the video. With the
            # disk full, the reserve is freed first so that giving the attempt back fits.
            self.disk_full(exc)
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
                this=f"{display(path.name)}: {message}",
                status="failed",
                source=self._source(sha, path),
                if_not="retried by the next run; quarantined after max_attempts",
            ),
            output_tag(path, sha),
        )
        self._record(
            VideoResult(
                display(path.name),
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
        folder = self._output_folder(path)
        analytic_path = self.layout.analytic / folder / f"{tag}.analytic.json"
        summary_path = self.layout.summaries / folder / f"{tag}.summary.json"
        destination = path if in_place else self._archive_path(path, sha)
        identity = self._identify(path, row, in_place=in_place)
        _place(analytic, identity, self._relative(destination), folder)
        validate(analytic, ANALYTIC_SCHEMA)
        analytic_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(analytic_path, analytic)
        summary = summarize(
            analytic,
            self.settings.status_rules,
            analytic_name=analytic_path.name,
            presence_gap_s=self.settings.presence_gap_s,
        )
        picks = pick(summary["labels"], self.settings.snapshots_per_video)
        if picks:
            snapshots = take_snapshots(
                path,
                picks,
                analytic["detections"],
                self.layout.snapshots / folder,
                tag,
                start=identity.start,
                root=self.layout.root,
            )
            if snapshots:
                summary["snapshots"] = snapshots
        validate(summary, SUMMARY_SCHEMA)
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(summary_path, summary)
        outputs = [self._output(analytic_path), self._output(summary_path)]
        outputs += [self._output(self.layout.root / item["path"]) for item in summary.get("snapshots", [])]
        written = self._append(
            LogLineDraft(
                who=WHO,
                did=DID_ANALYSED,
                this=str(summary["text"]),
                status="ok",
                source=self._source(sha, destination),
                if_ok=f"summary in {self._relative(summary_path)}",
                outputs=outputs,
            ),
            tag,
        )
        self.days.setdefault(identity.start.astimezone(self.zone).date(), []).append((summary_path, summary))
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
                display(path.name),
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

    def _output(self, path: Path) -> dict[str, str]:
        return {"path": self._relative(path), "sha256": sha256_file(path)}

    def _identify(self, path: Path, row: VideoRow, *, in_place: bool) -> SourceIdentity:
        base = self.layout.processed if in_place else self.layout.input
        try:
            mtime_ns = path.stat().st_mtime_ns
        except OSError:
            mtime_ns = int(self.clock().timestamp() * 1e9)
        return identify(
            path,
            base,
            patterns=self.settings.source_path_patterns,
            timezone=self.settings.source_timezone,
            mtime_ns=mtime_ns,
        )

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
    executor: Executor | None = None,
) -> OrchestrateReport:
    """Process the backlog once (``Mode.ONCE``) or keep watching ``input/`` until ``stop`` is set.

    Raises :class:`~vvctl.core.errors.LockedError` at once when another orchestrate holds the lock and
    :class:`~vvctl.core.errors.StorageError` when the disk fills up (the run stops; nothing is lost).
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    stop = threading.Event() if stop is None else stop
    layout = check_layout(settings)
    started_at = clock()

    def body(ctx: JobContext) -> OrchestrateReport:
        for directory in _output_dirs(layout):
            remove_stale_temps(directory)
        with VideoStateStore(layout.state_db, clock=clock) as db:
            run = _Run(
                settings,
                layout,
                db,
                ctx.writer,
                reprocess=reprocess,
                stop=stop,
                on_progress=on_progress,
                clock=clock,
                intra_op_threads=intra_op_threads,
                reserve=ctx.reserve,
                executor=executor,
            )
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
                        backlog = len(
                            list_videos(layout.input, settings.video_extensions, max_depth=settings.input_max_depth)
                        )
                        this = run.describe(handled, backlog=backlog, prefix=f"watch pass {passes}")
                        ctx.record_run(run.job_status(handled), this)
                    if stop.wait(interval_s):
                        break
            except BaseException as exc:
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped"
                ctx.progress = run.describe(run.results, backlog=None, prefix=f"run {reason}")
                raise
            finally:
                run.close()
            backlog = len(list_videos(layout.input, settings.video_extensions, max_depth=settings.input_max_depth))
            prefix = "run" if mode is Mode.ONCE else f"watch stopped after {passes} passes"
            summary = run.describe(run.results, backlog=backlog, prefix=prefix)
            return _report(layout, mode, run, started_at, clock(), passes, backlog, ctx.run_id, summary)

    result = run_job(settings, SPEC, body, clock=clock, stop=stop, layout=layout)
    return replace(result.report, job_loglines=list(result.loglines))


def _folders(top: Path) -> list[Path]:
    """``top`` and every folder under it (links not followed): the mirrored recorder folders."""
    found: list[Path] = []
    stack = [top]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            stack += [Path(e.path) for e in os.scandir(current) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot list {current}: {exc.strerror or exc}") from exc
    return found


def _output_dirs(layout: StorageLayout) -> list[Path]:
    """Where a killed run may have left temp files (only those of dead writers are removed)."""
    fixed = [layout.corrupted, layout.reports, layout.playlists]
    for tree in (layout.input, layout.processed, layout.analytic, layout.summaries, layout.snapshots):
        fixed += _folders(tree)
    try:
        logs = sorted(p for p in layout.loglines.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError as exc:
        raise StorageError(f"cannot list {layout.loglines}: {exc.strerror or exc}") from exc
    return fixed + logs


def _report(
    layout: StorageLayout,
    mode: Mode,
    run: _Run,
    started_at: datetime,
    finished_at: datetime,
    passes: int,
    backlog: int,
    run_id: int,
    summary: str,
) -> OrchestrateReport:
    analysed = [r for r in run.results if r.outcome is Outcome.DONE]
    frames = sum(r.frames_sampled for r in analysed)
    media = sum(r.media_s for r in analysed)
    wall = sum(r.wall_s for r in analysed)
    model = run.model_used()
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
        job_status=run.job_status(run.results).value,
        summary=summary,
        frames_sampled=frames,
        media_s=round(media, 3),
        analysis_s=round(wall, 3),
        sampled_fps=round(frames / wall, 2) if wall > 0 else 0.0,
        realtime_factor=round(media / wall, 2) if wall > 0 else 0.0,
        warnings=warnings,
        skipped=dict(run.skipped),
        reports=list(run.reports),
    )
