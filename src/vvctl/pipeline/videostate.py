"""Typed access to the ``videos`` and ``job_runs`` tables of the state database.

A video's row is keyed by the SHA-256 of its content, so a renamed or copied file maps to the same row.
Every SQLite error is turned into :class:`StorageError` here (a full disk surfaces as ``SQLITE_FULL``),
so callers deal with one error type for "the storage cannot take this write".
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from vvctl.core.errors import StorageError
from vvctl.core.names import from_db, to_db
from vvctl.core.state import ChainHeadRow, JobRun, JobStatus, StateStore


class VideoStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class VideoRow:
    sha256: str
    name: str
    path: Path
    size: int
    status: VideoStatus
    attempts: int
    error: str | None
    reason: str | None
    config_hash: str | None
    model_sha256: str | None
    analytic_path: Path | None
    summary_path: Path | None
    logline_path: Path | None
    first_seen: str
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    removed_at: str | None = None
    """When ``vvctl cleanup`` deleted the archived file (the video stays known: same content is a duplicate)."""


def _path(value: Any) -> Path | None:
    return None if value is None else Path(from_db(value))


def _db_path(path: Path) -> str | bytes:
    """A path for the ``videos`` table: text, or its exact bytes when it is not UTF-8 (see core.names)."""
    return to_db(str(path))


def _video(row: sqlite3.Row) -> VideoRow:
    return VideoRow(
        sha256=row["sha256"],
        name=from_db(row["name"]),
        path=Path(from_db(row["path"])),
        size=int(row["size"]),
        status=VideoStatus(row["status"]),
        attempts=int(row["attempts"]),
        error=row["error"],
        reason=row["reason"],
        config_hash=row["config_hash"],
        model_sha256=row["model_sha256"],
        analytic_path=_path(row["analytic_path"]),
        summary_path=_path(row["summary_path"]),
        logline_path=_path(row["logline_path"]),
        first_seen=row["first_seen"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_s=None if row["duration_s"] is None else float(row["duration_s"]),
        removed_at=row["removed_at"],
    )


class VideoStateStore(StateStore):
    """The state store with the video pipeline's ``videos`` table (job runs and chain heads are inherited)."""

    # -- videos ------------------------------------------------------------------------------------

    def get(self, sha256: str) -> VideoRow | None:
        row = self._one("SELECT * FROM videos WHERE sha256 = ?", (sha256,))
        return None if row is None else _video(row)

    def require(self, sha256: str) -> VideoRow:
        row = self.get(sha256)
        if row is None:
            raise StorageError(f"state database {self.db_path}: video {sha256[:12]} vanished from the videos table")
        return row

    def add(self, sha256: str, name: str, path: Path, size: int) -> VideoRow:
        self._write(
            "INSERT OR IGNORE INTO videos (sha256, name, path, size, status, attempts, first_seen)"
            " VALUES (?, ?, ?, ?, 'pending', 0, ?)",
            (sha256, to_db(name), _db_path(path), size, self._now()),
        )
        return self.require(sha256)

    def begin_attempt(self, sha256: str, path: Path, *, config_hash: str, model_sha256: str) -> VideoRow:
        """Mark the video ``processing`` and count the attempt before any work, so a crash is counted."""
        self._write(
            "UPDATE videos SET status = 'processing', attempts = attempts + 1, path = ?, name = ?,"
            " config_hash = ?, model_sha256 = ?, logline_path = NULL, error = NULL, reason = NULL,"
            " started_at = ?, finished_at = NULL, duration_s = NULL WHERE sha256 = ?",
            (_db_path(path), to_db(path.name), config_hash, model_sha256, self._now(), sha256),
        )
        return self.require(sha256)

    def undo_attempt(self, sha256: str, *, note: str | None = None) -> None:
        """Put the video back in the backlog without counting the attempt (not the video's fault)."""
        self._write(
            "UPDATE videos SET status = 'pending', attempts = MAX(attempts - 1, 0), error = ?, finished_at = ?"
            " WHERE sha256 = ?",
            (note, self._now(), sha256),
        )

    def record_failure(self, sha256: str, *, reason: str, error: str, duration_s: float | None = None) -> VideoRow:
        self._write(
            "UPDATE videos SET status = 'failed', reason = ?, error = ?, finished_at = ?, duration_s = ?"
            " WHERE sha256 = ?",
            (reason, error, self._now(), duration_s, sha256),
        )
        return self.require(sha256)

    def finish_done(
        self,
        sha256: str,
        *,
        destination: Path,
        analytic_path: Path,
        summary_path: Path,
        logline_path: Path,
        duration_s: float,
    ) -> None:
        """Record success; ``destination`` is where the video is about to be moved (the move comes next)."""
        self._write(
            "UPDATE videos SET status = 'done', path = ?, analytic_path = ?, summary_path = ?, logline_path = ?,"
            " error = NULL, reason = NULL, finished_at = ?, duration_s = ? WHERE sha256 = ?",
            (
                _db_path(destination),
                str(analytic_path),
                str(summary_path),
                str(logline_path),
                self._now(),
                duration_s,
                sha256,
            ),
        )

    def finish_quarantined(
        self, sha256: str, *, destination: Path, reason: str, error: str, logline_path: Path | None
    ) -> None:
        self._write(
            "UPDATE videos SET status = 'quarantined', path = ?, reason = ?, error = ?, logline_path = ?,"
            " finished_at = ? WHERE sha256 = ?",
            (
                _db_path(destination),
                reason,
                error,
                None if logline_path is None else str(logline_path),
                self._now(),
                sha256,
            ),
        )

    def requeue(self, sha256: str, path: Path, *, note: str) -> None:
        """An operator's retry: back to ``pending`` at ``path`` with no attempt counted and no reason."""
        self._write(
            "UPDATE videos SET status = 'pending', attempts = 0, path = ?, name = ?, reason = NULL, error = ?,"
            " logline_path = NULL, finished_at = ? WHERE sha256 = ?",
            (_db_path(path), to_db(path.name), note, self._now(), sha256),
        )

    def forget(self, sha256: str) -> None:
        """Drop a row whose content no longer exists anywhere (a quarantined file that kept growing)."""
        self._write("DELETE FROM videos WHERE sha256 = ?", (sha256,))

    def mark_stale(self, sha256: str, *, note: str) -> None:
        """A reprocess of an archived video died half-way: keep it done, but due for ``--reprocess`` again."""
        self._write(
            "UPDATE videos SET status = 'done', config_hash = NULL, error = ?, finished_at = ? WHERE sha256 = ?",
            (note, self._now(), sha256),
        )

    def mark_lost(self, sha256: str, *, note: str) -> None:
        """The file of a row left ``processing`` is gone (removed by hand): failed, with the reason why."""
        self._write(
            "UPDATE videos SET status = 'failed', reason = 'missing', error = ?, finished_at = ? WHERE sha256 = ?",
            (note, self._now(), sha256),
        )

    def with_status(self, *statuses: VideoStatus) -> list[VideoRow]:
        marks = ",".join("?" for _ in statuses)
        rows = self._all(f"SELECT * FROM videos WHERE status IN ({marks}) ORDER BY first_seen, name", statuses)  # noqa: S608
        return [_video(row) for row in rows]

    def counts(self) -> dict[VideoStatus, int]:
        found = {
            VideoStatus(row[0]): int(row[1]) for row in self._all("SELECT status, COUNT(*) FROM videos GROUP BY status")
        }
        return {status: found.get(status, 0) for status in VideoStatus}


__all__ = ["ChainHeadRow", "JobRun", "JobStatus", "VideoRow", "VideoStateStore", "VideoStatus"]
