"""Finding videos in ``input/``: extension filter, settle time, and collision-free destination names."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
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


def list_videos(directory: Path, extensions: Iterable[str]) -> list[Candidate]:
    """Regular files in ``directory`` with a video extension, oldest first.

    Hidden files (uploaders such as rsync write to ``.name.XXXX`` and rename at the end), vvctl's own temp
    files and symlinks are skipped: only a file that is really in ``input/`` can be moved out of it.
    """
    wanted = {ext.lower() for ext in extensions}
    found: list[Candidate] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        raise StorageError(f"{directory} does not exist; run 'vvctl bootstrap' first") from None
    except OSError as exc:
        raise StorageError(f"cannot list {directory}: {exc.strerror or exc}") from exc
    for entry in entries:
        if entry.name.startswith((".", TEMP_PREFIX)) or Path(entry.name).suffix.lower() not in wanted:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode):
            found.append(Candidate(Path(entry.path), info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    found.sort(key=lambda c: (c.mtime_ns, c.path.name))
    return found


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
