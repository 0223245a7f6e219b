"""The SQLite state store under ``state/`` (WAL mode): video status, LogLine chain heads, job runs.

Every connection enables WAL and a busy timeout, so cron jobs and a watcher can share it. Schema
changes go through :data:`MIGRATIONS`, applied in order and recorded in ``PRAGMA user_version``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from vvctl.core.errors import StorageError

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
)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating and migrating if needed) the state database at ``path``."""
    try:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open state database {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        _migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(f"state database {path} is unusable: {exc}") from exc
    return conn


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
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front so concurrent writers queue."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()
