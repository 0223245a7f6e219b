"""Finding videos in ``input/`` and its recorder folders: extension filter, skip reasons, settle time, and
collision-free destination names."""

from __future__ import annotations

import os
import stat
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from vvctl.core.atomic import TEMP_PREFIX
from vvctl.core.errors import StorageError
from vvctl.core.names import fit

FUTURE_TOLERANCE_S = 2.0
"""An mtime later than this past the wall clock is not trusted (a camera or uploader with a wrong clock)."""


@dataclass(frozen=True)
class Candidate:
    path: Path
    size: int
    mtime_ns: int
    ctime_ns: int = 0
    """Last inode change, set by the kernel's clock (a copy, a rename, a write): used when mtime lies."""

    @property
    def signature(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)

    def age_s(self, now_wall: float) -> float:
        """Seconds since the file last changed: by its mtime, or by its ctime when the mtime is in the future.

        A file whose mtime lies ahead of the clock (copied with its times from a box with a wrong clock)
        would otherwise never look settled to a ``--once`` run; its ctime is the kernel's own clock.
        """
        mtime = self.mtime_ns / 1e9
        if mtime > now_wall + FUTURE_TOLERANCE_S and self.ctime_ns:
            return now_wall - self.ctime_ns / 1e9
        return now_wall - mtime


DEFAULT_MAX_DEPTH = 4
"""Folder levels under ``input/`` that are searched (``input/cam1/2026-12-01/clip.mp4`` is depth 2)."""

TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".filepart", ".upload", "~")
"""Names an uploader writes to before renaming the finished file (``clip.mp4.part``, ``clip.mp4~``)."""


class SkipReason(StrEnum):
    """Why a file in ``input/`` is not a candidate (counted in the run report and ``vvctl status``)."""

    HIDDEN = "hidden"
    """A name starting with a dot: an upload in progress (rsync writes ``.name.XXXX``) or a system file."""
    TEMPORARY = "temporary"
    """An upload name (``.part``, ``~``, ...) or a vvctl temp file: finished files are renamed."""
    SYMLINK = "symlink"
    """A symbolic link (to a file or folder): only files really in ``input/`` can be moved out of it."""
    TOO_DEEP = "too_deep"
    """In a folder deeper than ``input_max_depth`` under ``input/``."""
    NOT_VIDEO = "not_video"
    """An extension that is not in ``video_extensions``."""
    UNREADABLE = "unreadable"
    """A folder that cannot be listed."""


@dataclass(frozen=True)
class Intake:
    candidates: list[Candidate]
    skipped: dict[str, int]
    """Files (and links, unreadable folders) left out, by :class:`SkipReason` value; only non-zero counts."""

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def _temporary(name: str) -> bool:
    lowered = name.lower()
    return name.startswith(TEMP_PREFIX) or lowered.endswith(TEMP_SUFFIXES)


def scan_input(directory: Path, extensions: Iterable[str], *, max_depth: int = DEFAULT_MAX_DEPTH) -> Intake:
    """Regular files under ``directory`` (recursively, at most ``max_depth`` folders down) with a video
    extension, oldest first, and a count of everything left out and why.

    Hidden names (uploaders such as rsync write to ``.name.XXXX`` and rename at the end, and hidden folders
    are not entered), temporary upload names and vvctl's own temp files are skipped; symlinks (to files or
    folders) are never followed: only a file that is really in ``input/`` can be moved out of it.
    """
    wanted = {ext.lower() for ext in extensions}
    found: list[Candidate] = []
    skipped: Counter[str] = Counter()
    try:
        top = list(os.scandir(directory))
    except FileNotFoundError:
        raise StorageError(f"{directory} does not exist; run 'vvctl bootstrap' first") from None
    except OSError as exc:
        raise StorageError(f"cannot list {directory}: {exc.strerror or exc}") from exc
    stack: list[tuple[list[os.DirEntry[str]], int]] = [(top, 0)]
    while stack:
        entries, depth = stack.pop()
        for entry in entries:
            name = entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError:
                skipped[SkipReason.UNREADABLE] += 1
                continue
            if stat.S_ISLNK(info.st_mode):
                skipped[SkipReason.SYMLINK] += 1
                continue
            if stat.S_ISDIR(info.st_mode):
                if name.startswith(".") or name.startswith(TEMP_PREFIX):
                    skipped[SkipReason.HIDDEN] += 1
                elif depth >= max_depth:
                    skipped[SkipReason.TOO_DEEP] += 1
                else:
                    try:
                        stack.append((list(os.scandir(entry.path)), depth + 1))
                    except OSError:
                        skipped[SkipReason.UNREADABLE] += 1
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if _temporary(name):
                skipped[SkipReason.TEMPORARY] += 1
            elif name.startswith("."):
                skipped[SkipReason.HIDDEN] += 1
            elif Path(name).suffix.lower() not in wanted:
                skipped[SkipReason.NOT_VIDEO] += 1
            else:
                found.append(Candidate(Path(entry.path), info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    found.sort(key=lambda c: (c.mtime_ns, str(c.path)))
    return Intake(found, {str(reason): count for reason, count in sorted(skipped.items())})


def list_videos(directory: Path, extensions: Iterable[str], *, max_depth: int = DEFAULT_MAX_DEPTH) -> list[Candidate]:
    """The candidates of :func:`scan_input` (oldest first), without the skip counts."""
    return scan_input(directory, extensions, max_depth=max_depth).candidates


def relative_folder(path: Path, base: Path) -> Path:
    """The folder of ``path`` relative to ``base`` (``Path('.')`` when it is directly in it or outside it).

    Kept in ``processed/`` and in every output, so two ``clip.mp4`` from two cameras never clash."""
    try:
        return path.parent.relative_to(base)
    except ValueError:
        return Path()


class SettleTracker:
    """Decides when a file in ``input/`` is finished: its size and mtime unchanged for ``settle_s``.

    Two signals, either is enough: the mtime is at least ``settle_s`` old (a cron run sees the file once),
    or this process saw the same size and mtime for ``settle_s`` of its own monotonic time (a watcher is
    not fooled by an mtime in the future after a clock step or a copy that preserved times). An mtime in
    the future is replaced by the ctime (:meth:`Candidate.age_s`), so a ``--once`` run takes such a file too.
    """

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._seen: dict[Path, tuple[tuple[int, int], float]] = {}

    def settled(self, candidate: Candidate, *, now_wall: float | None = None, now_mono: float | None = None) -> bool:
        if self.settle_s <= 0:
            return True
        wall = time.time() if now_wall is None else now_wall
        mono = time.monotonic() if now_mono is None else now_mono
        previous = self._seen.get(candidate.path)
        if previous is None or previous[0] != candidate.signature:
            self._seen[candidate.path] = (candidate.signature, mono)
            first_seen = mono
        else:
            first_seen = previous[1]
        return candidate.age_s(wall) >= self.settle_s or mono - first_seen >= self.settle_s

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)


def free_destination(directory: Path, name: str, sha256: str | None, *, reserve: int = 0) -> Path:
    """``directory/name`` if free, else ``stem.<sha8>.ext``, else ``stem.<sha8>.<n>.ext``: never overwrite.

    Every candidate fits in ``NAME_MAX`` bytes with ``reserve`` bytes to spare (for a suffix such as
    ``.error.json`` added beside it): a long name is cut, with a hash of it (:func:`vvctl.core.names.fit`).
    """
    limit = 255 - reserve
    stem, suffix = Path(name).stem, Path(name).suffix
    if len(suffix.encode("utf-8", "surrogateescape")) > 16:  # not an extension, just a dot in a long name
        stem, suffix = name, ""
    tag = (sha256 or "unread")[:8]
    target = directory / fit(stem, suffix, limit=limit)
    if not target.exists():
        return target
    target = directory / fit(stem, f".{tag}{suffix}", limit=limit)
    number = 2
    while target.exists():
        target = directory / fit(stem, f".{tag}.{number}{suffix}", limit=limit)
        number += 1
    return target
