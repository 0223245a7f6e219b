from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vvctl.core import state
from vvctl.core.errors import LockedError
from vvctl.core.locks import exclusive_lock


def test_second_holder_is_refused_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "job.lock"
    with exclusive_lock(lock, what="job"):
        started = time.monotonic()
        expected = f"another job is already running \\(pid {os.getpid()}\\)"
        with pytest.raises(LockedError, match=expected), exclusive_lock(lock, what="job"):
            pass
        assert time.monotonic() - started < 1.0
    with exclusive_lock(lock, what="job"):
        pass  # released: free again


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from vvctl.core.locks import exclusive_lock
    with exclusive_lock(Path(sys.argv[1]), what="job"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    lock = tmp_path / "job.lock"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockedError), exclusive_lock(lock, what="job"):
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    with exclusive_lock(lock, what="job"):
        pass


def test_state_db_is_wal_and_migrations_are_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    with state.opened(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(state.MIGRATIONS)
        with state.transaction(conn):
            conn.execute("INSERT INTO chain_heads VALUES ('jobs', 1, 'abc', 'now')")
    with state.opened(db) as conn:  # reopening re-runs nothing and keeps data
        assert conn.execute("SELECT seq FROM chain_heads").fetchone()[0] == 1


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    with state.opened(tmp_path / "s.sqlite3") as conn:
        with pytest.raises(RuntimeError), state.transaction(conn):
            conn.execute("INSERT INTO chain_heads VALUES ('jobs', 1, 'abc', 'now')")
            raise RuntimeError
        assert conn.execute("SELECT count(*) FROM chain_heads").fetchone()[0] == 0


def test_a_version_1_database_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "s.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executescript(state.MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        conn.execute(
            "INSERT INTO videos (sha256, name, path, size, status, first_seen)"
            " VALUES ('ab', 'a.mp4', '/p', 1, 'done', 't')"
        )
        conn.execute("INSERT INTO chain_heads VALUES ('jobs', 3, 'abc', 'now')")
    conn.close()
    with state.opened(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(state.MIGRATIONS) >= 2
        assert tuple(conn.execute("SELECT name, removed_at FROM videos").fetchone()) == ("a.mp4", None)
        assert conn.execute("SELECT seq FROM chain_heads").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM chain_files").fetchone()[0] == 0
