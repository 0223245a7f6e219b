"""``vvctl status``: what is waiting, what was done, what went wrong, and when each job last ran.

Read-only: the state database is opened read-only (on a nearly full disk without its shared-memory
index, see :mod:`vvctl.core.state`), and the report says when the disk is full. The backlog is counted
from the files really in ``input/``, the rest from the state database, so a video dropped in a second
ago shows up at once, as ``settling``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vvctl.core.errors import StorageError
from vvctl.core.layout import StorageLayout, check_storage_root
from vvctl.core.names import display
from vvctl.core.reserve import SpaceReserve
from vvctl.core.settings import Settings
from vvctl.core.state import MIN_FREE_BYTES, free_bytes, state_missing_problem
from vvctl.pipeline.discovery import list_videos, scan_input
from vvctl.pipeline.videostate import ChainHeadRow, JobRun, VideoRow, VideoStateStore, VideoStatus


@dataclass(frozen=True)
class Backlog:
    total: int
    """Video files in ``input/`` (hidden upload temp files and symlinks are not counted)."""
    ready: int
    """Of those, files whose mtime is at least ``settle_s`` old: the next run picks them up."""
    settling: int
    """Files still being written (or written less than ``settle_s`` ago)."""
    oldest_age_s: float | None
    """Age of the oldest file in ``input/`` by its mtime; None when ``input/`` is empty."""


@dataclass(frozen=True)
class Disk:
    free_bytes: int
    """Free space on the file system holding ``state/``."""
    full: bool
    """Too little space for orchestrate to run (it would stop at once with exit 6)."""

    @property
    def message(self) -> str | None:
        if not self.full:
            return None
        return (
            f"the disk is full ({self.free_bytes // 1024} KiB free): orchestrate cannot run until some space "
            "is freed; nothing is lost"
        )


@dataclass(frozen=True)
class VideoIssue:
    name: str
    sha256: str
    status: str
    attempts: int
    reason: str | None
    error: str | None
    path: Path
    since: str | None


@dataclass(frozen=True)
class StatusReport:
    storage_root: Path
    backlog: Backlog
    videos: dict[str, int]
    """Rows of the state database by status (one row per distinct video content)."""
    processed_files: int
    """Video files in ``processed/`` (done videos plus archived duplicates)."""
    quarantined_files: int
    """Video files in ``corrupted/`` (each with its ``.error.json``)."""
    processing: list[VideoIssue] = field(default_factory=list)
    failed: list[VideoIssue] = field(default_factory=list)
    """Failed attempts waiting for a retry (or files gone missing mid-analysis)."""
    quarantined: list[VideoIssue] = field(default_factory=list)
    last_runs: list[JobRun] = field(default_factory=list)
    last_successes: dict[str, JobRun] = field(default_factory=dict)
    """The newest ok or warning run of each job: "when did each job last succeed?" (the dead-man figure)."""
    chain_heads: list[ChainHeadRow] = field(default_factory=list)
    disk: Disk | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    """Files under ``input/`` that are not analysed, by reason (hidden, temporary, symlink, too_deep,
    not_video, unreadable)."""


def _issue(row: VideoRow) -> VideoIssue:
    return VideoIssue(
        name=display(row.name),
        sha256=row.sha256,
        status=row.status.value,
        attempts=row.attempts,
        reason=row.reason,
        error=row.error,
        path=row.path,
        since=row.finished_at or row.started_at or row.first_seen,
    )


def _count_videos(directory: Path, extensions: tuple[str, ...], depth: int) -> int:
    return len(list_videos(directory, extensions, max_depth=depth))


def _backlog(layout: StorageLayout, settings: Settings, now: float) -> tuple[Backlog, dict[str, int]]:
    intake = scan_input(layout.input, settings.video_extensions, max_depth=settings.input_max_depth)
    candidates = intake.candidates
    ready = sum(1 for c in candidates if now - c.mtime_ns / 1e9 >= settings.settle_s)
    oldest = min((c.mtime_ns for c in candidates), default=None)
    backlog = Backlog(
        total=len(candidates),
        ready=ready,
        settling=len(candidates) - ready,
        oldest_age_s=None if oldest is None else round(max(now - oldest / 1e9, 0.0), 1),
    )
    return backlog, intake.skipped


def collect_status(settings: Settings, *, now: float | None = None) -> StatusReport:
    """Gather the status of the storage root in ``settings`` (``now``: wall-clock seconds, for tests)."""
    layout = StorageLayout(check_storage_root(settings.storage_root))
    for directory in (layout.input, layout.processed, layout.corrupted, layout.state):
        if not directory.is_dir():
            raise StorageError(
                f"storage root {layout.root} is not set up ({directory.name}/ is missing); run 'vvctl bootstrap' first"
            )
    if not os.access(layout.state, os.R_OK | os.X_OK):
        raise StorageError(f"cannot read {layout.state}: permission denied")
    problem = state_missing_problem(layout.state_db, layout.loglines)
    if problem is not None:
        raise StorageError(problem)
    backlog, skipped = _backlog(layout, settings, time.time() if now is None else now)
    free = free_bytes(layout.state)
    counts = {status: 0 for status in VideoStatus}
    processing: list[VideoIssue] = []
    failed: list[VideoIssue] = []
    quarantined: list[VideoIssue] = []
    last_runs: list[JobRun] = []
    successes: dict[str, JobRun] = {}
    heads: list[ChainHeadRow] = []
    if layout.state_db.exists():  # else nothing ever ran: all empty
        with VideoStateStore(layout.state_db, readonly=True) as db:
            counts = db.counts()
            processing = [_issue(r) for r in db.with_status(VideoStatus.PROCESSING)]
            failed = [_issue(r) for r in db.with_status(VideoStatus.FAILED)]
            quarantined = [_issue(r) for r in db.with_status(VideoStatus.QUARANTINED)]
            last_runs = db.last_runs()
            successes = db.last_successes()
            heads = db.chain_heads()
    return StatusReport(
        storage_root=layout.root,
        backlog=backlog,
        videos={status.value: counts[status] for status in VideoStatus},
        processed_files=_count_videos(layout.processed, settings.video_extensions, settings.input_max_depth),
        quarantined_files=_count_videos(layout.corrupted, settings.video_extensions, 0),
        processing=processing,
        failed=failed,
        quarantined=quarantined,
        last_runs=last_runs,
        last_successes=successes,
        chain_heads=heads,
        # Full: orchestrate would stop at once (it needs its reserve and room to open the database).
        skipped=skipped,
        disk=Disk(free_bytes=free, full=free < MIN_FREE_BYTES + SpaceReserve(layout.state).missing_bytes()),
    )
