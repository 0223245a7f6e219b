"""``vvctl export-logs``: logs and LogLines archived so that anyone can later prove nothing changed.

One run, through the job runner (lock, job-run record, signed LogLine in ``jobs``):

1. select the files: ``logs/`` (rotated files included) and the LogLines of every log up to the head
   recorded in the state store; by default what is new since the last export (logs modified since it
   was made, LogLines no export on the box holds yet), with ``--date`` files last modified on that UTC
   day, with ``--all`` everything;
2. write ``exports/vv_logs_YYYYMMDD[-N].tar.gz`` in one streaming pass (:mod:`.archive`) to a temp file
   that is renamed into place only when complete, then the signed manifest next to it; a failure
   (disk full) leaves neither behind and deletes nothing;
3. remove exports older than ``retention_days.exports`` (or ``--keep-days``), archive and manifest
   together, except one whose manifest anchors a LogLine chain left on the box;
4. with ``prune``, remove the LogLines that an export holds and that verifies (:mod:`.prune`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from vvctl.core.atomic import TEMP_PREFIX, atomic_open, atomic_write_bytes, dumps_json, remove_stale_temps
from vvctl.core.errors import InterruptedRun, StorageError, UsageError
from vvctl.core.export_manifest import (
    ARCHIVE_SUFFIX,
    MANIFEST_KIND,
    MANIFEST_SUFFIX,
    SCHEMA,
    export_stem,
    logline_member,
)
from vvctl.core.jobs import JobContext, JobOutcome, JobRunResult, JobSpec, run_job
from vvctl.core.keystore import load_keystore
from vvctl.core.layout import StorageLayout
from vvctl.core.logline import LOG_NAME, MD_SUFFIX, SUFFIX, scan_log_files, sign_document
from vvctl.core.schemas import validate
from vvctl.core.settings import Settings
from vvctl.core.state import storage_errors
from vvctl.core.timeutil import Clock, parse_rfc3339, rfc3339, utcnow
from vvctl.ops.export.archive import GZIP_LEVEL, Skipped, Source, WrittenArchive, write_archive
from vvctl.ops.export.manifests import TrustedManifest, trusted_manifests
from vvctl.ops.export.prune import prune_loglines

SPEC = JobSpec("export-logs", "exported the logs")

Opener = Callable[[Path], AbstractContextManager[IO[bytes]]]


class Scope(StrEnum):
    SINCE_LAST = "since-last"
    DATE = "date"
    ALL = "all"


@dataclass(frozen=True)
class ExportProgress:
    """Input bytes archived so far out of the total selected (for a progress bar)."""

    done: int
    total: int


@dataclass(frozen=True)
class LogLineRange:
    log: str
    count: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class ExportReport:
    scope: Scope
    date: str | None
    archive: Path | None
    """None when there was nothing to export."""
    manifest: Path | None
    archive_sha256: str | None
    archive_bytes: int
    bytes_in: int
    log_files: int
    loglines: tuple[LogLineRange, ...]
    skipped: tuple[Skipped, ...]
    removed_exports: tuple[str, ...]
    """Export stems removed by retention."""
    kept_exports: tuple[str, ...]
    """Export stems past retention that were kept because they anchor a LogLine chain on the box."""
    pruned_loglines: int
    warnings: tuple[str, ...]

    @property
    def members(self) -> int:
        return self.log_files + sum(r.count for r in self.loglines)

    @property
    def outcome(self) -> JobOutcome:
        return JobOutcome.WARNING if self.warnings else JobOutcome.OK

    @property
    def summary(self) -> str:
        if self.archive is None:
            text = "nothing to export" + (f" for {self.date}" if self.scope is Scope.DATE else "")
        else:
            records = sum(r.count for r in self.loglines)
            text = (
                f"exported {self.log_files} log file(s) and {records} LogLine(s) to {self.archive.name} "
                f"({self.archive_bytes} bytes, SHA-256 {self.archive_sha256})"
            )
        if self.removed_exports:
            text += f"; removed {len(self.removed_exports)} old export(s)"
        if self.pruned_loglines:
            text += f"; removed {self.pruned_loglines} exported LogLine(s) from loglines/"
        if self.warnings:
            text += f"; {len(self.warnings)} warning(s)"
        return text


# -- selection -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """Which modification times a scope takes: [start, end) in epoch seconds (None: unbounded)."""

    start: float | None = None
    end: float | None = None

    def __contains__(self, mtime: float) -> bool:
        return (self.start is None or mtime >= self.start) and (self.end is None or mtime < self.end)


def _walk(root: Path, prefix: str, skipped: list[Skipped]) -> Iterator[tuple[Source, os.stat_result]]:
    """Regular files under ``root`` (recursively, symlinks not followed) with their member names."""
    stack = [(str(root), prefix)]
    while stack:
        directory, name_prefix = stack.pop()
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            name = f"{name_prefix}/{entry.name}"
            if entry.name.startswith(TEMP_PREFIX):
                continue  # a file being written atomically right now
            if entry.is_symlink():
                skipped.append(Skipped(name, "a symbolic link (not followed)"))
            elif entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, name))
            elif not _safe_name(entry.name):
                skipped.append(Skipped(name, "a name with control characters, a backslash or invalid UTF-8"))
            elif entry.is_file(follow_symlinks=False):
                yield Source(name, entry.path), entry.stat(follow_symlinks=False)


def _safe_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\\" not in name and not any(ord(c) < 0x20 for c in name)


def _select_logs(layout: StorageLayout, window: _Window, skipped: list[Skipped]) -> list[Source]:
    return [source for source, st in _walk(layout.logs, "logs", skipped) if st.st_mtime in window]


def _select_loglines(
    layout: StorageLayout,
    scope: Scope,
    window: _Window,
    heads: dict[str, int],
    exported: set[tuple[str, int]],
) -> list[Source]:
    """LogLine files (and their ``.md``) up to each log's recorded head, as the scope asks."""
    selected: list[Source] = []
    try:
        logs = sorted(e.name for e in os.scandir(layout.loglines) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return selected
    for log in logs:
        if not LOG_NAME.fullmatch(log):
            continue
        head = heads.get(log)
        for seq, paths in sorted(scan_log_files(layout.loglines / log).items()):
            if head is not None and seq > head:
                continue  # being written by a job right now: the next export takes it
            if scope is Scope.SINCE_LAST and (log, seq) in exported:
                continue
            for path in paths:
                if path.is_symlink():
                    continue
                if scope is Scope.DATE and path.stat().st_mtime not in window:
                    continue
                selected.append(Source(f"loglines/{log}/{path.name}", str(path)))
                md = path.with_name(path.name[: -len(SUFFIX)] + MD_SUFFIX)
                if md.is_file() and not md.is_symlink():
                    selected.append(Source(f"loglines/{log}/{md.name}", str(md)))
    return selected


# -- naming and retention ------------------------------------------------------------------------------


def _free_stem(exports: Path, day: date) -> str:
    base = f"vv_logs_{day:%Y%m%d}"
    for n in range(0, 1_000_000):
        stem = base if n == 0 else f"{base}-{n}"
        if not any(os.path.lexists(exports / (stem + s)) for s in (ARCHIVE_SUFFIX, MANIFEST_SUFFIX)):
            return stem
    raise StorageError(f"{exports} already holds a million exports for {day}")  # pragma: no cover


def _anchoring_stems(layout: StorageLayout, manifests: list[TrustedManifest]) -> dict[str, str]:
    """Stem -> log, for each export whose manifest vouches for the record before a log's first one."""
    needed: dict[tuple[str, int], str] = {}
    try:
        logs = [e.name for e in os.scandir(layout.loglines) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return {}
    for log in logs:
        seqs = scan_log_files(layout.loglines / log)
        first = min(seqs, default=1)
        if first > 1:
            needed[(log, first - 1)] = log
    stems: dict[str, str] = {}
    for manifest in manifests:
        for member in manifest.document["members"]:
            where = logline_member(member["path"])
            if where in needed:
                stem = export_stem(manifest.path.name)
                assert stem is not None
                stems[stem] = needed[where]
    return stems


def _retain(
    layout: StorageLayout, keep_days: int, today: date, protected: dict[str, str], just_written: str | None
) -> tuple[list[str], list[str]]:
    """Remove exports whose date is more than ``keep_days`` before ``today``; archive and manifest go together."""
    cutoff = today - timedelta(days=keep_days)
    by_stem: dict[str, list[Path]] = {}
    for entry in os.scandir(layout.exports):
        stem = export_stem(entry.name)
        if stem is not None and not entry.is_dir(follow_symlinks=False):
            by_stem.setdefault(stem, []).append(Path(entry.path))
    removed: list[str] = []
    kept: list[str] = []
    for stem in sorted(by_stem):
        day = datetime.strptime(stem[8:16], "%Y%m%d").replace(tzinfo=UTC).date()
        if day >= cutoff or stem == just_written:
            continue
        if stem in protected:
            kept.append(stem)
            continue
        # The manifest first: an archive without one is plainly incomplete, never mistaken for verified.
        for path in sorted(by_stem[stem], key=lambda p: not p.name.endswith(MANIFEST_SUFFIX)):
            path.unlink(missing_ok=True)
        removed.append(stem)
    return removed, kept


# -- the manifest --------------------------------------------------------------------------------------


def _logline_ranges(written: WrittenArchive) -> tuple[LogLineRange, ...]:
    seqs: dict[str, list[int]] = {}
    for member in written.members:
        where = logline_member(member.path)
        if where is not None:
            seqs.setdefault(where[0], []).append(where[1])
    return tuple(LogLineRange(log, len(s), min(s), max(s)) for log, s in sorted(seqs.items()))


def _manifest(
    name: str,
    written: WrittenArchive,
    *,
    created: str,
    scope: dict[str, str],
    heads: dict[str, dict[str, Any]],
    ranges: tuple[LogLineRange, ...],
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "kind": MANIFEST_KIND,
        "created": created,
        "scope": scope,
        "archive": {"name": name, "size": written.size, "sha256": written.sha256, "gzip_level": GZIP_LEVEL},
        "members": [{"path": m.path, "size": m.size, "mtime": m.mtime, "sha256": m.sha256} for m in written.members],
        "chain_heads": heads,
        "loglines": {r.log: {"count": r.count, "first_seq": r.first_seq, "last_seq": r.last_seq} for r in ranges},
    }


def _head_warnings(written: WrittenArchive, heads: dict[str, dict[str, Any]]) -> list[str]:
    """A head LogLine whose exported bytes are not the recorded head hash was changed after it was written."""
    warnings = []
    for member in written.members:
        where = logline_member(member.path)
        if where is None:
            continue
        head = heads.get(where[0])
        if head is not None and head["seq"] == where[1] and head["hash"] != member.sha256:
            warnings.append(
                f"log {where[0]}: LogLine seq {where[1]} does not hash to the recorded head; run 'vvctl verify-logline'"
            )
    return warnings


# -- the job -------------------------------------------------------------------------------------------


def _scope(day: date | None, everything: bool) -> Scope:
    if day is not None and everything:
        raise UsageError("give --date or --all, not both")
    return Scope.DATE if day is not None else Scope.ALL if everything else Scope.SINCE_LAST


def export_logs(
    settings: Settings,
    *,
    day: date | None = None,
    everything: bool = False,
    keep_days: int | None = None,
    prune: bool = False,
    clock: Clock = utcnow,
    stop: threading.Event | None = None,
    on_progress: Callable[[ExportProgress], None] | None = None,
    opener: Opener = atomic_open,
) -> JobRunResult[ExportReport]:
    """Export ``logs/`` and LogLines to a signed, reproducible tar.gz in ``exports/`` (module docstring).

    ``day``: files last modified on that UTC day; ``everything``: all files; neither: what is new since the
    last export. ``keep_days`` overrides ``retention_days.exports``. ``opener`` opens the archive for
    writing (an atomic temp file by default; tests pass one that fails like a full disk).
    """
    scope = _scope(day, everything)
    if keep_days is not None and keep_days < 1:
        raise UsageError("--keep-days must be at least 1")
    retention = keep_days if keep_days is not None else settings.retention_days.get("exports")

    def body(ctx: JobContext) -> ExportReport:
        layout = ctx.layout
        now = ctx.clock()
        with storage_errors(f"creating {layout.exports}"):
            layout.exports.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(layout.exports)  # what a killed export left
        store = load_keystore(settings.key_store)
        manifests, warnings = trusted_manifests(layout.exports, store.verification_keys())
        head_rows = ctx.state.chain_heads()
        heads: dict[str, dict[str, Any]] = {row.log: {"seq": row.seq, "hash": row.hash} for row in head_rows}

        skipped: list[Skipped] = []
        scope_doc: dict[str, str] = {"mode": scope.value}
        window = _Window()
        exported: set[tuple[str, int]] = set()
        if scope is Scope.DATE:
            assert day is not None
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            window = _Window(start.timestamp(), (start + timedelta(days=1)).timestamp())
            scope_doc["date"] = day.isoformat()
        elif scope is Scope.SINCE_LAST:
            for manifest in manifests:
                exported.update(manifest.loglines())
            full = [m for m in manifests if m.document["scope"]["mode"] != Scope.DATE.value]
            if full:
                since = max(full, key=lambda m: m.document["created"]).document["created"]
                scope_doc["since"] = since
                window = _Window(int(parse_rfc3339(since).timestamp()))
        with storage_errors("selecting the files to export"):
            sources = _select_logs(layout, window, skipped)
            sources += _select_loglines(layout, scope, window, {row.log: row.seq for row in head_rows}, exported)
            total = 0
            for source in sources:
                total += os.lstat(source.path).st_size
        ctx.progress = f"selected {len(sources)} file(s), {total} bytes"
        ctx.log.info("selected", extra={"files": len(sources), "bytes": total, "scope": scope.value})

        archive: Path | None = None
        manifest_path: Path | None = None
        written: WrittenArchive | None = None
        if sources:
            stem = _free_stem(layout.exports, day or now.astimezone(UTC).date())
            archive = target = layout.exports / (stem + ARCHIVE_SUFFIX)
            manifest_path = layout.exports / (stem + MANIFEST_SUFFIX)
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                if on_progress is not None:
                    on_progress(ExportProgress(done, total))

            def check_stop() -> None:
                if ctx.stop.is_set():
                    raise InterruptedRun(f"stopped before {target.name} was complete; nothing was kept")

            with storage_errors(f"writing {archive}"), opener(archive) as raw:
                written = write_archive(sources, raw, on_bytes=advance, stop=check_stop)
            ctx.progress = f"wrote {archive.name}"
            try:
                document = _manifest(
                    archive.name,
                    written,
                    created=rfc3339(now),
                    scope=scope_doc,
                    heads=heads,
                    ranges=_logline_ranges(written),
                )
                if store.box is not None:
                    document["box"] = store.box
                sign_document(store, document)
                validate(document, SCHEMA)
                with storage_errors(f"writing {manifest_path}"):
                    atomic_write_bytes(manifest_path, dumps_json(document).encode("utf-8"))
            except BaseException:
                archive.unlink(missing_ok=True)  # no archive without its manifest
                raise
            warnings += _head_warnings(written, heads)
            manifests.append(TrustedManifest(manifest_path, document))
            ctx.log.info("exported", extra={"archive": str(archive), "sha256": written.sha256})

        removed: list[str] = []
        kept: list[str] = []
        pruned = 0
        if prune:
            ctx.progress = (ctx.progress or "") + "; removing exported LogLines"
            pruned = prune_loglines(settings, keys=store.verification_keys()).loglines
        if retention is not None:
            with storage_errors("removing old exports"):
                protected = _anchoring_stems(layout, manifests)
                just = export_stem(archive.name) if archive else None
                removed, kept = _retain(layout, retention, now.astimezone(UTC).date(), protected, just)
        return ExportReport(
            scope=scope,
            date=day.isoformat() if day else None,
            archive=archive,
            manifest=manifest_path,
            archive_sha256=written.sha256 if written else None,
            archive_bytes=written.size if written else 0,
            bytes_in=written.bytes_in if written else 0,
            log_files=sum(1 for m in written.members if m.path.startswith("logs/")) if written else 0,
            loglines=_logline_ranges(written) if written else (),
            skipped=tuple(skipped) + (written.skipped if written else ()),
            removed_exports=tuple(removed),
            kept_exports=tuple(kept),
            pruned_loglines=pruned,
            warnings=tuple(warnings),
        )

    return run_job(settings, SPEC, body, clock=clock, stop=stop)


__all__ = ["SPEC", "ExportProgress", "ExportReport", "LogLineRange", "Opener", "Scope", "export_logs"]
