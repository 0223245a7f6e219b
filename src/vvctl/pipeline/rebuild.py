"""``vvctl state rebuild``: a lost state database rebuilt from the signed LogLines and the files.

The state database is a cache of what the LogLines already prove: which video (by SHA-256) was analysed
and where it went, which was quarantined and why, and the head of every chain. When it is deleted or lost,
every command stops with a message pointing here (creating an empty one would make every chain look cut
and every archived video look new). The rebuild:

1. verifies every LogLine (signatures, chains) with the key store, and refuses if anything is invalid:
   a rebuild must not re-anchor a chain someone tampered with;
2. replays the ``videos`` log in order: ``analysed a video`` → ``done`` (paths from the record, analysis
   settings from the analytic JSON), ``quarantined a video`` → ``quarantined`` (reason and message from
   the ``.error.json`` beside the video), ``gave up an analysis attempt`` → ``failed``, ``re-queued`` →
   ``pending``; duplicates archived with ``skipped`` need no row of their own;
3. records every log's head (seq and hash of its newest file) as the chain head;
4. writes the database under a temp name and renames it into place, then appends a ``jobs`` LogLine.

What is not in any LogLine is not rebuilt: the job-run history, and attempts of videos that were in
``input/`` when the database was lost (they are simply analysed again).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vvctl.core import state
from vvctl.core.atomic import TEMP_PREFIX, fsync_dir
from vvctl.core.errors import IntegrityError, StorageError, UsageError
from vvctl.core.keystore import load_verification_keys
from vvctl.core.locks import exclusive_lock
from vvctl.core.logline import LogLineDraft, LogLineWriter, chain_hash, scan_log_files
from vvctl.core.names import to_db
from vvctl.core.settings import Settings
from vvctl.core.timeutil import Clock, rfc3339, utcnow
from vvctl.core.verify import verify_paths
from vvctl.pipeline.orchestrate import DID_ANALYSED, JOB, check_layout
from vvctl.pipeline.quarantine import error_path_for, read_record

WHO = "vvctl state rebuild"


@dataclass(frozen=True)
class RebuildReport:
    storage_root: Path
    state_db: Path
    loglines: int
    """LogLines verified and replayed."""
    videos: dict[str, int]
    """Rebuilt rows by status."""
    chain_heads: dict[str, int]
    """The head seq of every log."""
    logline: Path
    """The ``jobs`` LogLine that records the rebuild."""


def _read(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _analysis_settings(analytic_path: Path) -> tuple[str | None, str | None, float | None]:
    document = _read(analytic_path) or {}
    model = document.get("model") if isinstance(document.get("model"), dict) else {}
    timings = document.get("timings") if isinstance(document.get("timings"), dict) else {}
    wall = timings.get("wall_s") if isinstance(timings, dict) else None
    return (
        document.get("config_hash") if isinstance(document.get("config_hash"), str) else None,
        model.get("sha256") if isinstance(model, dict) and isinstance(model.get("sha256"), str) else None,
        float(wall) if isinstance(wall, int | float) else None,
    )


def _replay(record: dict[str, Any], rows: dict[str, dict[str, Any]], layout_root: Path) -> None:
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    sha = source.get("sha256") if isinstance(source, dict) else None
    path_text = source.get("path") if isinstance(source, dict) else None
    if not isinstance(sha, str) or not isinstance(path_text, str):
        return  # a job record, or a file whose content was never read
    path = Path(path_text)
    if not path.is_absolute():  # records name files relative to storage_root
        path = layout_root / path
        path_text = str(path)
    did, when = record.get("did"), str(record.get("when"))
    row = rows.setdefault(
        sha,
        {"name": path.name, "path": path_text, "status": "pending", "attempts": 0, "first_seen": when},
    )
    if did == DID_ANALYSED:
        summary_name = str(record.get("if_ok", "")).partition("summaries/")[2]
        summary = layout_root / "summaries" / summary_name if summary_name else None
        analytic = (
            layout_root / "analytic" / summary_name.replace(".summary.json", ".analytic.json") if summary else None
        )
        config_hash, model_sha, wall = _analysis_settings(analytic) if analytic else (None, None, None)
        row.update(
            status="done",
            path=path_text,
            attempts=max(row["attempts"], 1),
            reason=None,
            error=None,
            analytic_path=str(analytic) if analytic else None,
            summary_path=str(summary) if summary else None,
            logline_path=record["_file"],
            config_hash=config_hash,
            model_sha256=model_sha,
            finished_at=when,
            duration_s=wall,
        )
    elif did == "quarantined a video":
        details = read_record(error_path_for(path)) or {}
        if details.get("duplicate_of") is not None:
            return  # a copy of one quarantined before: the first one's row tells
        row.update(
            status="quarantined",
            path=path_text,
            reason=details.get("reason"),
            error=details.get("message"),
            attempts=int(details.get("attempts", row["attempts"]) or 0),
            logline_path=record["_file"],
            finished_at=when,
        )
        if row["reason"] is None:
            parts = str(record.get("this", "")).split(": ", 2)
            row["reason"] = parts[1] if len(parts) > 1 else "crashed"
            row["error"] = row["error"] or (parts[2] if len(parts) > 2 else None)
    elif did == "gave up an analysis attempt":
        row.update(status="failed", path=path_text, attempts=row["attempts"] + 1, reason="timeout", finished_at=when)
    elif did == "re-queued a quarantined video":
        row.update(status="pending", path=path_text, attempts=0, reason=None, error="re-queued", finished_at=when)
    elif did == "gave back a quarantined video that was still being written":
        rows.pop(sha, None)


def rebuild_state(settings: Settings, *, clock: Clock = utcnow) -> RebuildReport:
    """Rebuild a lost ``state/vvctl.sqlite3`` (see the module docstring). Refuses when one exists."""
    layout = check_layout(settings)
    with exclusive_lock(layout.lock(JOB), what="vvctl orchestrate"):
        if layout.state_db.exists():
            raise UsageError(
                f"{layout.state_db} exists; rebuild only replaces a lost state database "
                "(move it aside first if it is damaged)"
            )
        verified = verify_paths([layout.loglines], load_verification_keys(settings.key_store))
        if not verified.ok:
            raise IntegrityError(
                f"{verified.invalid} LogLine(s) do not verify; refusing to rebuild the state database from them: "
                f"run 'vvctl verify-logline {layout.loglines}'"
            )
        rows: dict[str, dict[str, Any]] = {}
        heads: dict[str, tuple[int, str]] = {}
        for directory in sorted(p for p in layout.loglines.iterdir() if p.is_dir()):
            files = scan_log_files(directory)
            for seq in sorted(files):
                [path] = files[seq]  # verified: one file per seq
                record = _read(path)
                if record is None:
                    continue
                if directory.name == "videos":
                    record["_file"] = str(path)
                    _replay(record, rows, layout.root)
                heads[directory.name] = (seq, chain_hash(path.read_bytes()))
        temp = layout.state / f"{TEMP_PREFIX}rebuild.sqlite3.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            conn = state.connect(temp)
            try:
                with state.transaction(conn):
                    now = rfc3339(clock())
                    for log, (seq, digest) in heads.items():
                        conn.execute(
                            "INSERT INTO chain_heads (log, seq, hash, updated_at) VALUES (?, ?, ?, ?)",
                            (log, seq, digest, now),
                        )
                    for sha, row in rows.items():
                        conn.execute(
                            "INSERT INTO videos (sha256, name, path, size, status, attempts, error, reason,"
                            " config_hash, model_sha256, analytic_path, summary_path, logline_path, first_seen,"
                            " finished_at, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                sha,
                                to_db(row["name"]),
                                to_db(row["path"]),
                                _size(Path(row["path"])),
                                row["status"],
                                row["attempts"],
                                row.get("error"),
                                row.get("reason"),
                                row.get("config_hash"),
                                row.get("model_sha256"),
                                row.get("analytic_path"),
                                row.get("summary_path"),
                                row.get("logline_path"),
                                row["first_seen"],
                                row.get("finished_at"),
                                row.get("duration_s"),
                            ),
                        )
            finally:
                conn.close()
            temp.replace(layout.state_db)
            fsync_dir(layout.state)
        except OSError as exc:
            raise StorageError(f"cannot write {layout.state_db}: {exc.strerror or exc}") from exc
        finally:
            for leftover in (temp, temp.with_name(temp.name + "-wal"), temp.with_name(temp.name + "-shm")):
                leftover.unlink(missing_ok=True)
        counts: dict[str, int] = {}
        for row in rows.values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        written = LogLineWriter(settings, clock=clock).append(
            "jobs",
            LogLineDraft(
                who=WHO,
                did="rebuilt the state database",
                this=(
                    f"the state database was missing; rebuilt from {verified.valid} verified LogLines: "
                    + (", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no video")
                    + "; job-run history before now is not recoverable"
                ),
                status="warning",
                source={"type": "job", "id": "state-rebuild"},
            ),
            slug="state-rebuild",
        )
    return RebuildReport(
        storage_root=layout.root,
        state_db=layout.state_db,
        loglines=verified.valid,
        videos=counts,
        chain_heads={log: seq for log, (seq, _) in heads.items()},
        logline=written.path,
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
