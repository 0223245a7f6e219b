"""The SQLite state store under ``state/`` (WAL mode): video status, LogLine chain heads, job runs.

Every connection enables WAL and a busy timeout, so cron jobs and a watcher can share it. Schema
changes go through :data:`MIGRATIONS`, applied in order and recorded in ``PRAGMA user_version``.

A nearly full disk: WAL keeps its index in a shared-memory file (``-shm``) that SQLite extends and then
maps; where the file system cannot allocate it, a reader or writer dies of SIGBUS or gets a bare
"disk I/O error". So the free space is checked before a connection is opened: below
:data:`MIN_FREE_BYTES` a writer refuses with :class:`~vvctl.core.errors.DiskFullError` (exit 6) and a
reader opens in ``EXCLUSIVE`` locking mode, where SQLite keeps the index in private memory and never
touches ``-shm``. Every SQLite error leaves this module as a :class:`~vvctl.core.errors.StorageError`
(``DiskFullError`` for ``SQLITE_FULL``), never as a raw ``sqlite3`` exception.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from vvctl.core.errors import DiskFullError, StorageError
from vvctl.core.timeutil import Clock, rfc3339, utcnow

MIN_FREE_BYTES = 256 * 1024
"""Below this much free space the state database is not opened for writing (nor its ``-shm`` mapped)."""

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE IF NOT EXISTS chain_heads (
        log TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS videos (
        sha256 TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending','processing','done','failed','quarantined')),
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        reason TEXT,
        config_hash TEXT,
        model_sha256 TEXT,
        analytic_path TEXT,
        summary_path TEXT,
        logline_path TEXT,
        first_seen TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        duration_s REAL
    );
    CREATE INDEX IF NOT EXISTS videos_status ON videos(status);
    CREATE TABLE IF NOT EXISTS job_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        summary TEXT
    );
    CREATE INDEX IF NOT EXISTS job_runs_job ON job_runs(job, id);
    """,
    # 2: O(1) LogLine appends (the head's file name and the name an append is about to write) and videos
    # that cleanup removed from processed/ or corrupted/ (still known: same content again is a duplicate)
    """
    CREATE TABLE IF NOT EXISTS chain_files (
        log TEXT PRIMARY KEY,
        head_name TEXT,
        next_name TEXT
    );
    ALTER TABLE videos ADD COLUMN removed_at TEXT;
    """,
    # 3: alert state (vvctl.core.alerts) and what the monitor remembers between runs (vvctl.ops.monitor)
    """
    CREATE TABLE IF NOT EXISTS alert_states (
        check_id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('OK','WARN','CRITICAL')),
        since TEXT NOT NULL,
        checked_at TEXT NOT NULL,
        what TEXT NOT NULL,
        location TEXT NOT NULL,
        value TEXT NOT NULL,
        threshold TEXT NOT NULL,
        hint TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS alert_deliveries (
        check_id TEXT NOT NULL,
        target TEXT NOT NULL,
        state TEXT NOT NULL,
        notified_at TEXT NOT NULL,
        PRIMARY KEY (check_id, target)
    );
    CREATE TABLE IF NOT EXISTS monitor_containers (
        name TEXT PRIMARY KEY,
        container_id TEXT NOT NULL,
        docker_restart_count INTEGER NOT NULL,
        unhealthy_since TEXT,
        docker_restarts INTEGER NOT NULL DEFAULT 0,
        vvctl_restarts INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS container_restarts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS container_restarts_name ON container_restarts(name, at);
    CREATE TABLE IF NOT EXISTS verified_heads (
        log TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        verified_at TEXT NOT NULL
    )
    """,
)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path`` (a directory)."""
    try:
        info = os.statvfs(path)
    except OSError as exc:
        raise StorageError(f"cannot check the free space of {path}: {exc.strerror or exc}") from exc
    return info.f_bavail * info.f_frsize


def disk_full_message(directory: Path, free: int) -> str:
    return (
        f"disk full: only {free // 1024} KiB free on the file system holding {directory}; "
        "free some space, then run again (nothing was changed)"
    )


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating and migrating if needed) the state database at ``path``.

    ``readonly``: never create, migrate or write (``vvctl status``); on a nearly full disk the index is
    kept in private memory so that reading still works.
    """
    free = free_bytes(path.parent)
    low = free < MIN_FREE_BYTES
    if low and not readonly:
        raise DiskFullError(disk_full_message(path.parent, free))
    if readonly and not path.exists():
        raise StorageError(f"state database {path} does not exist")
    # mode=rw even for readers on a full disk: a mode=ro connection cannot fall back from -shm.
    mode = "ro" if readonly and not low else "rw" if readonly else "rwc"
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode={mode}", uri=True, timeout=30.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open state database {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        if readonly and low:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")  # before the first read: no -shm at all
        if readonly:
            conn.execute("PRAGMA query_only=ON")
            _check_version(conn, path)
        else:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            _migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        if is_disk_full(exc) or ("disk I/O error" in str(exc) and free_bytes(path.parent) < MIN_FREE_BYTES):
            raise DiskFullError(disk_full_message(path.parent, free_bytes(path.parent))) from exc
        raise StorageError(f"state database {path} is unusable: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _check_version(conn: sqlite3.Connection, path: Path) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version < len(MIGRATIONS):
        raise StorageError(
            f"state database {path} has schema version {version}, older than this vvctl's "
            f"{len(MIGRATIONS)}; run 'vvctl orchestrate' once to upgrade it"
        )


def _migrate(conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version >= len(MIGRATIONS):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front so concurrent writers queue.

    A SQLite error (disk full at ``COMMIT`` included) leaves as :class:`StorageError`.
    """
    path = _db_path(conn)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite may already have rolled back (SQLITE_FULL does)
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise storage_error(exc, f"writing the state database {path}") from exc


def _db_path(conn: sqlite3.Connection) -> Path:
    try:
        row = conn.execute("PRAGMA database_list").fetchone()
        return Path(row[2]) if row and row[2] else Path("state database")
    except sqlite3.Error:
        return Path("state database")


def state_missing_problem(db_path: Path, loglines: Path) -> str | None:
    """Why the state database cannot simply be created anew, or None: a lost database with LogLines left.

    Creating a fresh one would make every LogLine chain look tampered with (its head unknown) and every
    video look new; ``vvctl state rebuild`` rebuilds it from the LogLines and the files instead.
    """
    if db_path.exists():
        return None
    try:
        found = next(loglines.glob("*/*.logline.json"), None)
    except OSError:
        found = None
    if found is None:
        return None
    return (
        f"the state database {db_path} is missing (deleted or lost) but {loglines} holds LogLines; "
        "run 'vvctl state rebuild' to rebuild it from the LogLines and the files (see docs/orchestrate.md)"
    )


@contextlib.contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


# -- one translation of storage failures into exit 6 ----------------------------------------------------

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT and SQLite's ``SQLITE_FULL``, wherever in the chain of causes it sits."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DiskFullError):
            return True
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL_ERRNOS:
            return True
        if isinstance(seen, sqlite3.Error) and (
            getattr(seen, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(seen)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def storage_error(exc: OSError | sqlite3.Error, what: str) -> StorageError:
    """The one-line :class:`StorageError` (exit 6) for an OS or SQLite failure while doing ``what``."""
    if is_disk_full(exc):
        return DiskFullError(f"disk full while {what}: free some space (see 'vvctl cleanup') and run again")
    if isinstance(exc, OSError):
        return StorageError(f"{what}: {exc.strerror or exc}")
    return StorageError(f"{what}: {exc}")


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn any :class:`OSError` or :class:`sqlite3.Error` raised in the block into a :class:`StorageError`."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        raise storage_error(exc, what) from exc


# -- job runs ----------------------------------------------------------------------------------------------


class JobStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    KILLED = "killed"
    """Found still ``running`` by the next run: the process died without closing its row."""


UNFINISHED_VIDEO_STATUSES = ("pending", "processing", "failed")
"""A video in one of these states is not done: cleanup never deletes its file."""

SUCCESSFUL = (JobStatus.OK, JobStatus.WARNING)
"""Statuses that count as "the job ran and did its work" for the dead-man check."""


@dataclass(frozen=True)
class JobRun:
    id: int
    job: str
    started_at: str
    finished_at: str | None
    status: JobStatus
    summary: str | None


@dataclass(frozen=True)
class ChainHeadRow:
    log: str
    seq: int
    hash: str
    updated_at: str


def _job(row: sqlite3.Row) -> JobRun:
    return JobRun(
        id=int(row["id"]),
        job=row["job"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        status=JobStatus(row["status"]),
        summary=row["summary"],
    )


class StateStore:
    """One connection to ``state/vvctl.sqlite3``; every write is its own ``BEGIN IMMEDIATE`` transaction.

    Holds what every job shares (job runs, LogLine chain heads); the video pipeline's table lives in
    :class:`vvctl.pipeline.videostate.VideoStateStore`, a subclass. Every SQLite error becomes a
    :class:`StorageError` here, so callers deal with one error type.
    """

    def __init__(self, db_path: Path, *, clock: Clock = utcnow, readonly: bool = False) -> None:
        self.db_path = db_path
        self._clock = clock
        self._conn = connect(db_path, readonly=readonly)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _now(self) -> str:
        return rfc3339(self._clock())

    def _what(self) -> str:
        return f"writing the state database {self.db_path}"

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        with storage_errors(self._what()), transaction(self._conn):
            cursor = self._conn.execute(sql, params)
            return int(cursor.lastrowid or 0) if sql.lstrip().upper().startswith("INSERT") else cursor.rowcount

    def _one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        with storage_errors(f"reading the state database {self.db_path}"):
            row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with storage_errors(f"reading the state database {self.db_path}"):
            return list(self._conn.execute(sql, params).fetchall())

    # -- job runs --------------------------------------------------------------------------------------

    def start_job(self, job: str) -> int:
        return self._write(
            "INSERT INTO job_runs (job, started_at, status) VALUES (?, ?, 'running')", (job, self._now())
        )

    def finish_job(self, run_id: int, status: JobStatus, summary: str) -> None:
        self._write(
            "UPDATE job_runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
            (self._now(), status.value, summary, run_id),
        )

    def close_dead_jobs(self, job: str) -> int:
        """Runs still marked running when the caller holds the job's lock died without closing their row."""
        return self._write(
            "UPDATE job_runs SET status = 'killed', summary = COALESCE(summary, 'the process ended without"
            " finishing its run (killed or crashed)') WHERE job = ? AND status = 'running'",
            (job,),
        )

    def last_job(self, job: str) -> JobRun | None:
        row = self._one("SELECT * FROM job_runs WHERE job = ? ORDER BY id DESC LIMIT 1", (job,))
        return None if row is None else _job(row)

    def last_runs(self) -> list[JobRun]:
        """The newest run of every job that ever ran, by job name."""
        rows = self._all("SELECT * FROM job_runs WHERE id IN (SELECT MAX(id) FROM job_runs GROUP BY job) ORDER BY job")
        return [_job(row) for row in rows]

    def last_finished_job(self, job: str, *statuses: JobStatus) -> JobRun | None:
        marks = ",".join("?" for _ in statuses)
        row = self._one(
            f"SELECT * FROM job_runs WHERE job = ? AND status IN ({marks}) ORDER BY id DESC LIMIT 1",  # noqa: S608
            (job, *statuses),
        )
        return None if row is None else _job(row)

    def last_successes(self) -> dict[str, JobRun]:
        """The newest successful (ok or warning) run of every job: what a dead-man check reads."""
        marks = ",".join("?" for _ in SUCCESSFUL)
        rows = self._all(
            "SELECT * FROM job_runs WHERE id IN (SELECT MAX(id) FROM job_runs"  # noqa: S608
            f" WHERE status IN ({marks}) GROUP BY job) ORDER BY job",
            SUCCESSFUL,
        )
        return {row["job"]: _job(row) for row in rows}

    def chain_heads(self) -> list[ChainHeadRow]:
        """The recorded head (newest seq and its hash) of every LogLine log."""
        rows = self._all("SELECT log, seq, hash, updated_at FROM chain_heads ORDER BY log")
        return [ChainHeadRow(row["log"], int(row["seq"]), row["hash"], row["updated_at"]) for row in rows]

    # -- archived videos, as cleanup sees them ------------------------------------------------------------

    def video_files(self) -> dict[str, str]:
        """Path -> status of every file the ``videos`` table names (the status that most needs care wins
        when several rows name one path): what cleanup must know before deleting a video."""
        found: dict[str, str] = {}
        for row in self._all("SELECT path, status FROM videos"):
            path, status = str(row["path"]), str(row["status"])
            if found.get(path) not in UNFINISHED_VIDEO_STATUSES:
                found[path] = status
        return found

    def mark_videos_removed(self, paths: list[str]) -> set[str]:
        """Before cleanup deletes the archived videos at ``paths``: record them as removed (the videos stay
        known, so the same content arriving later is a duplicate, not a video to recover). In one
        transaction, so an orchestrate that started working on one since the plan is seen: those paths are
        returned and must not be deleted."""
        busy: set[str] = set()
        marks = ",".join("?" for _ in UNFINISHED_VIDEO_STATUSES)
        with storage_errors(self._what()), transaction(self._conn):
            for path in paths:
                row = self._conn.execute(
                    f"SELECT 1 FROM videos WHERE path = ? AND status IN ({marks}) LIMIT 1",  # noqa: S608
                    (path, *UNFINISHED_VIDEO_STATUSES),
                ).fetchone()
                if row is not None:
                    busy.add(path)
                    continue
                self._conn.execute(
                    "UPDATE videos SET removed_at = ? WHERE path = ? AND status IN ('done', 'quarantined')",
                    (self._now(), path),
                )
        return busy

    def unmark_videos_removed(self, paths: list[str]) -> None:
        """The files at ``paths`` could not be deleted after all."""
        with storage_errors(self._what()), transaction(self._conn):
            self._conn.executemany("UPDATE videos SET removed_at = NULL WHERE path = ?", [(p,) for p in paths])
