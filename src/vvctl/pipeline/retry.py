"""``vvctl retry``: give quarantined videos another analysis (an operator's decision, signed in a LogLine).

Quarantine is final for orchestrate; when its cause is gone (a timeout on a busy night, a crash that was
fixed, permissions repaired), an operator re-queues the video: it moves back from ``corrupted/`` to
``input/`` under the name it arrived with (or a free variant), its ``.error.json`` is removed, its state
row is reset (no attempt counted) and a LogLine in the ``videos`` log records who did it and why it was
quarantined. The next ``orchestrate`` run analyses it like a new video. Runs under orchestrate's lock, so
it never races a run (exit 4 while one is going).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vvctl.core.atomic import durable_move
from vvctl.core.errors import StorageError, UsageError
from vvctl.core.layout import StorageLayout
from vvctl.core.locks import exclusive_lock
from vvctl.core.logline import LogLineDraft, LogLineWriter
from vvctl.core.names import display
from vvctl.core.reserve import SpaceReserve
from vvctl.core.settings import Settings
from vvctl.core.state import state_missing_problem
from vvctl.core.timeutil import Clock, utcnow
from vvctl.pipeline.discovery import free_destination
from vvctl.pipeline.orchestrate import JOB, check_layout, output_tag
from vvctl.pipeline.quarantine import original_name, read_record, records, video_path_for
from vvctl.pipeline.videostate import VideoStateStore

WHO = "vvctl retry"


@dataclass(frozen=True)
class RetriedVideo:
    name: str
    """Its name in ``corrupted/`` (as text)."""
    sha256: str | None
    reason: str
    """Why it had been quarantined."""
    requeued_as: Path
    logline: Path


@dataclass(frozen=True)
class RetryReport:
    storage_root: Path
    videos: list[RetriedVideo] = field(default_factory=list)


def _matches(wanted: str, video: Path, record: dict[str, object]) -> bool:
    details = record.get("video")
    arrived = details.get("name") if isinstance(details, dict) else None
    return wanted in (video.name, display(video.name), arrived, original_name(record, video))


def retry(settings: Settings, names: list[str], *, every: bool = False, clock: Clock = utcnow) -> RetryReport:
    """Re-queue the quarantined videos named (their name in ``corrupted/`` or the one they arrived with),
    or every one with ``every``. An unknown name is a :class:`UsageError` before anything is moved."""
    if every == bool(names):
        raise UsageError("name the videos to retry, or give --all (not both)")
    layout: StorageLayout = check_layout(settings)
    with exclusive_lock(layout.lock(JOB), what="vvctl orchestrate"):
        problem = state_missing_problem(layout.state_db, layout.loglines)
        if problem is not None:
            raise StorageError(problem)
        found: list[tuple[Path, Path, dict[str, object]]] = []
        for error_path in records(layout.corrupted):
            record = read_record(error_path)
            video = video_path_for(error_path)
            if record is not None and video.is_file():
                found.append((error_path, video, record))
        chosen = found if every else []
        for wanted in names:
            hits = [item for item in found if _matches(wanted, item[1], item[2])]
            if not hits:
                raise UsageError(f"no quarantined video named {wanted!r} in {layout.corrupted}")
            chosen.extend(hit for hit in hits if hit not in chosen)
        SpaceReserve(layout.state).acquire()
        writer = LogLineWriter(settings, clock=clock)
        report = RetryReport(layout.root)
        with VideoStateStore(layout.state_db, clock=clock) as db:
            for error_path, video, record in chosen:
                details = record.get("video")
                sha = details.get("sha256") if isinstance(details, dict) else None
                sha = sha if isinstance(sha, str) else None
                reason = str(record.get("reason"))
                target = free_destination(layout.input, original_name(record, video), sha)
                source = {"type": "video", "id": sha or f"unread:{display(video.name)}", "path": display(str(target))}
                if sha is not None:
                    source["sha256"] = sha
                written = writer.append(
                    "videos",
                    LogLineDraft(
                        who=WHO,
                        did="re-queued a quarantined video",
                        this=(
                            f"{display(video.name)} was quarantined ({reason}: {record.get('message')}); "
                            f"moved back to input/ as {display(target.name)} for a new analysis"
                        ),
                        status="ok",
                        source=source,
                    ),
                    slug=output_tag(target, sha),
                )
                durable_move(video, target)
                error_path.unlink(missing_ok=True)
                if sha is not None and db.get(sha) is not None:
                    db.requeue(sha, target, note=f"re-queued by an operator (was quarantined: {reason})")
                report.videos.append(RetriedVideo(display(video.name), sha, reason, target, written.path))
    return report
