"""``vvctl cleanup``: keep the disk in bounds without ever deleting the wrong file.

Three steps, so that the decision can be tested apart from the deleting:

* :func:`snapshot` walks each directory it was given, never following a symlink (``O_NOFOLLOW`` opens,
  ``scandir`` on directory descriptors) and never leaving the file system of the directory;
* :func:`plan` is pure: snapshot, policy, the time and the free space in; the files and empty
  directories to delete out. Files older than their directory's age limit go; when free space is below
  the floor, the oldest other eligible files go too, oldest first, until the floor is met and no further;
* :func:`apply` deletes relative to open directory descriptors (as ``shutil.rmtree`` does on Linux):
  every directory on the way is opened with ``O_NOFOLLOW`` and must be the very directory the snapshot
  saw (device and inode), and every file must still be the file the plan chose (inode and mtime). A
  directory swapped for a symlink, or replaced, since the plan cannot redirect a delete.

Never deleted: ``state/``, ``models/`` and ``loglines/`` (refused as directories; never entered), the
key store, the config file and the live log; a video in ``input/``; a file the ``videos`` table names
whose video is not done (pending, processing, failed: what orchestrate is working on or will retry);
symlinks and anything reached through one; anything outside the given directories. A done or
quarantined video that cleanup deletes is marked ``removed_at`` in the state store first, so the same
content arriving later is reported as a ``duplicate`` and never "recovered" into ``processed/``.

:func:`cleanup` runs it all as the ``cleanup`` job (lock, job-run record, signed LogLine);
:func:`preview` is the dry run: the same plan, nothing deleted, nothing recorded.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple, Protocol

from vvctl.core.atomic import fsync_dir
from vvctl.core.errors import StorageError, UsageError
from vvctl.core.jobs import JobContext, JobOutcome, JobRunResult, JobSpec, run_job
from vvctl.core.jsonlog import LOG_FILE
from vvctl.core.layout import DIRECTORIES, SYSTEM_DIRECTORIES, StorageLayout, check_storage_root
from vvctl.core.settings import Settings
from vvctl.core.state import UNFINISHED_VIDEO_STATUSES, StateStore, storage_errors
from vvctl.core.timeutil import Clock, rfc3339, utcnow

SPEC = JobSpec("cleanup", "cleaned up the storage", frees_space=True)
NEVER_CLEANED = ("state", "models", "loglines")
"""Storage directories cleanup never touches: key store and database, models, the LogLine audit trail."""
GRACE_S = 600.0
"""The free-space floor never takes a file modified in the last ten minutes (it may still be written)."""
GB = 1_000_000_000
REPORTED_LIMIT = 200
"""At most this many failures and skipped paths are listed in the report (all are counted; all go to --log-file)."""

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DAY_S = 86_400.0

log = logging.getLogger("vvctl.cleanup")


# -- policy ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FreeSpaceFloor:
    """The free space cleanup keeps: an absolute number of bytes or a percentage of the file system."""

    bytes: int = 0
    percent: float | None = None

    def resolve(self, total: int) -> int:
        return int(total * self.percent / 100) if self.percent is not None else self.bytes

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else format_bytes(self.bytes)


_SIZE = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>%|[kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_free_space(text: str) -> FreeSpaceFloor:
    """``20GB``, ``500MiB``, ``10%`` or a bare number of GB (as ``min_free_space_gb``); ``0`` disables."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise UsageError(f"--min-free-space {text!r}: give a size such as 20GB or 500MiB, or a percentage such as 10%")
    number = float(match["number"])
    unit = (match["unit"] or "gb").lower()
    if unit == "%":
        if number > 100:
            raise UsageError(f"--min-free-space {text!r}: a percentage is at most 100%")
        return FreeSpaceFloor(percent=number)
    base = _UNITS[unit[0]]
    if "i" in unit:
        base = 1024 ** "bkmgt".index(unit[0])
    return FreeSpaceFloor(bytes=int(number * base))


def format_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


@dataclass(frozen=True)
class DirPolicy:
    """One directory cleanup may touch, and how old its files may get."""

    name: str
    """The storage directory's name (``processed``) or the path as given."""
    path: Path
    max_age_days: float


@dataclass(frozen=True)
class Policy:
    dirs: tuple[DirPolicy, ...]
    floor: int = 0
    """Bytes of free space wanted under ``storage_root``; 0: no floor."""
    excludes: tuple[str, ...] = ()
    """Globs matched against a file's or directory's name and its path relative to its directory."""
    keep: Mapping[str, str] = field(default_factory=dict)
    """Absolute paths never deleted, with why (key store, config file, videos that are not done)."""
    keep_dirs: frozenset[str] = frozenset()
    """Directories never removed even when empty (the storage layout's own)."""
    input_dir: Path | None = None
    video_extensions: frozenset[str] = frozenset()
    grace_s: float = GRACE_S


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


# -- snapshot ----------------------------------------------------------------------------------------------


class FileEntry(NamedTuple):
    # A named tuple, not a frozen dataclass: a walk makes one per file, and tuples are built several
    # times faster (100,000 files are an ordinary day's tree).
    rel: str
    """Path relative to its directory, ``/``-separated."""
    size: int
    frees: int
    """Bytes deleting it gives back under ``storage_root`` (0: another file system, or other hard links)."""
    mtime_ns: int
    ino: int


@dataclass(frozen=True, slots=True)
class DirEntry:
    rel: str
    """``""`` for the directory cleanup was given."""
    ino: int
    mtime_ns: int
    pinned: bool
    """Holds something cleanup never deletes or never looked at (a symlink, a mount point, a socket)."""


@dataclass(frozen=True)
class RootSnapshot:
    name: str
    path: Path
    dev: int = 0
    ino: int = 0
    files: tuple[FileEntry, ...] = ()
    dirs: tuple[DirEntry, ...] = ()
    """Parents before their children; the first is the root itself."""
    skipped: tuple[Skipped, ...] = ()
    error: str | None = None
    """Why the directory could not be walked at all (missing, a symlink, unreadable)."""


@dataclass(frozen=True)
class DiskSpace:
    free: int
    total: int


def disk_space(path: Path) -> DiskSpace:
    """Free (for unprivileged writers) and total bytes of the file system holding ``path``."""
    try:
        info = os.statvfs(path)
    except OSError as exc:
        raise StorageError(f"cannot read the free space of {path}: {exc.strerror or exc}") from exc
    return DiskSpace(info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize)


class _Unusable(Exception):
    def __init__(self, reason: str, *, vanished: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.vanished = vanished


def _is_symlink(name: str | Path, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_error(exc: OSError, what: str, name: str | Path | None = None, dir_fd: int | None = None) -> _Unusable:
    # O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR (Linux) or ELOOP.
    if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and name is not None and _is_symlink(name, dir_fd)):
        return _Unusable(f"{what} is a symlink: not followed")
    if exc.errno == errno.ENOTDIR:
        return _Unusable(f"{what} is not a directory")
    if exc.errno == errno.ENOENT:
        return _Unusable(f"{what} does not exist", vanished=True)
    return _Unusable(f"cannot open {what}: {exc.strerror or exc}")


def _open_root(path: Path, storage_root: Path) -> int:
    """An ``O_NOFOLLOW`` descriptor of ``path``: below the storage root every component is opened without
    following symlinks; outside it (``--allow-outside``) the last one is."""
    try:
        rel = path.relative_to(storage_root)
    except ValueError:
        try:
            return os.open(path, _O_DIR)
        except OSError as exc:
            raise _open_error(exc, str(path), path) from None
    try:
        fd = os.open(storage_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _open_error(exc, f"storage root {storage_root}") from None
    for part in rel.parts:
        try:
            child = os.open(part, _O_DIR, dir_fd=fd)
        except OSError as exc:
            raise _open_error(exc, str(path), part, fd) from None
        finally:
            os.close(fd)
        fd = child
    return fd


def snapshot(
    dirs: Sequence[DirPolicy], *, storage_root: Path, never: Iterable[Path] = (), storage_dev: int | None = None
) -> tuple[RootSnapshot, ...]:
    """Walk each directory (see the module docstring); symlinks and other file systems are not entered."""
    never_paths = {str(p) for p in never}
    if storage_dev is None:
        storage_dev = storage_root.stat().st_dev
    return tuple(_walk_root(d, storage_root, never_paths, storage_dev) for d in dirs)


def _walk_root(policy: DirPolicy, storage_root: Path, never: set[str], storage_dev: int) -> RootSnapshot:
    try:
        fd = _open_root(policy.path, storage_root)
    except _Unusable as exc:
        return RootSnapshot(policy.name, policy.path, error=exc.reason)
    files: list[FileEntry] = []
    dirs: list[DirEntry] = []
    skipped: list[Skipped] = []
    info = os.fstat(fd)
    dev = info.st_dev
    base = str(policy.path)
    # Depth first with a stack of open descriptors: (descriptor, rel, ino, mtime_ns).
    pending: list[tuple[int, str, int, int]] = [(fd, "", info.st_ino, info.st_mtime_ns)]
    try:
        while pending:
            dir_fd, rel, ino, mtime_ns = pending.pop()
            prefix = f"{rel}/" if rel else ""
            pinned = False
            children: list[tuple[str, int, int]] = []
            try:
                with os.scandir(dir_fd) as entries:
                    for entry in entries:
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # gone since it was listed
                        mode = st.st_mode
                        if stat.S_ISREG(mode):
                            frees = st.st_blocks * 512 if st.st_nlink == 1 and st.st_dev == storage_dev else 0
                            files.append(FileEntry(prefix + entry.name, st.st_size, frees, st.st_mtime_ns, st.st_ino))
                        elif stat.S_ISDIR(mode):
                            child_rel = prefix + entry.name
                            if st.st_dev != dev:
                                pinned = True
                                skipped.append(Skipped(Path(base, child_rel), "another file system: not entered"))
                            elif f"{base}/{child_rel}" in never:
                                pinned = True
                                skipped.append(Skipped(Path(base, child_rel), "vvctl's own data: never cleaned"))
                            else:
                                children.append((entry.name, st.st_ino, st.st_mtime_ns))
                        else:
                            pinned = True
                            if stat.S_ISLNK(mode):
                                skipped.append(Skipped(Path(base, prefix + entry.name), "a symlink: not followed"))
                for name, child_ino, child_mtime in children:
                    try:
                        child_fd = os.open(name, _O_DIR, dir_fd=dir_fd)
                    except OSError as exc:
                        problem = _open_error(exc, name, name, dir_fd)
                        if not problem.vanished:  # a directory gone since it was listed is simply not there
                            pinned = True
                            skipped.append(Skipped(Path(base, prefix + name), problem.reason))
                        continue
                    child_info = os.fstat(child_fd)
                    if (child_info.st_dev, child_info.st_ino) != (dev, child_ino):
                        os.close(child_fd)
                        pinned = True
                        skipped.append(Skipped(Path(base, prefix + name), "replaced while it was walked"))
                        continue
                    pending.append((child_fd, prefix + name, child_ino, child_mtime))
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    pinned = True
                    skipped.append(Skipped(Path(base, rel), f"cannot list: {exc.strerror or exc}"))
            finally:
                os.close(dir_fd)
            dirs.append(DirEntry(rel, ino, mtime_ns, pinned))
    finally:
        for left, *_ in pending:  # only when the walk itself failed
            os.close(left)
    # The walk pops children in reverse; sorted by path, parents come before their children.
    dirs.sort(key=lambda d: d.rel)
    return RootSnapshot(policy.name, policy.path, dev, info.st_ino, tuple(files), tuple(dirs), tuple(skipped))


# -- plan --------------------------------------------------------------------------------------------------


class Deletion(NamedTuple):
    root: int
    """Index of the directory in the snapshot."""
    entry: FileEntry
    why: str
    """``age`` (older than the directory's limit) or ``floor`` (freed for the free-space floor)."""


@dataclass(frozen=True)
class Plan:
    roots: tuple[RootSnapshot, ...]
    policy: Policy
    space: DiskSpace
    deletions: tuple[Deletion, ...]
    """Grouped by directory (the order :func:`apply` deletes in, one open directory at a time)."""
    removals: tuple[tuple[int, DirEntry], ...]
    """Directories left empty, children before their parents."""
    kept: tuple[Mapping[str, int], ...]
    """Per directory: files never to be deleted, by reason."""
    floor: int
    frees: int
    """Bytes the deletions give back under ``storage_root`` (estimate from the allocated blocks)."""

    @property
    def floor_reachable(self) -> bool:
        return self.space.free + self.frees >= self.floor


def _matcher(globs: Sequence[str]) -> Callable[[str], bool] | None:
    if not globs:
        return None
    pattern = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))
    return lambda text: pattern.match(text) is not None


def _kept_reasons(root: RootSnapshot, policy: Policy) -> list[str | None]:
    """For each file of ``root``: why it is never deleted, or None."""
    excluded = _matcher(policy.excludes)
    excluded_dirs: set[str] = set()
    if excluded is not None:
        for d in root.dirs:
            if not d.rel:
                continue
            parent = d.rel.rpartition("/")[0]
            if parent in excluded_dirs or excluded(d.rel) or excluded(d.rel.rpartition("/")[2]):
                excluded_dirs.add(d.rel)
    base = str(root.path)
    in_input = policy.input_dir is not None and (root.path == policy.input_dir or policy.input_dir in root.path.parents)
    prefix = f"{base}/"
    keep = {path[len(prefix) :]: why for path, why in policy.keep.items() if path.startswith(prefix)}
    if excluded is None and not in_input:  # the common case, kept cheap: 100,000 files are usual
        return [keep.get(f.rel) for f in root.files]
    out: list[str | None] = []
    for f in root.files:
        parent, _, name = f.rel.rpartition("/")
        if excluded is not None and (parent in excluded_dirs or excluded(f.rel) or excluded(name)):
            out.append("excluded")
        elif in_input and os.path.splitext(name)[1].lower() in policy.video_extensions:  # noqa: PTH122
            out.append("a video in input/")
        else:
            out.append(keep.get(f.rel))
    return out


def plan(roots: Sequence[RootSnapshot], policy: Policy, *, now: datetime, space: DiskSpace) -> Plan:
    """Decide what goes (pure: the same inputs give the same plan). See the module docstring."""
    roots = tuple(roots)
    limits = {d.name: d.max_age_days for d in policy.dirs}
    now_ns = int(now.timestamp() * 1e9)
    grace_ns = int(policy.grace_s * 1e9)
    selected: list[Deletion] = []
    spare: list[tuple[int, int, str, FileEntry]] = []  # eligible but young: (mtime, root, rel, entry)
    kept: list[dict[str, int]] = []
    for index, root in enumerate(roots):
        counts: dict[str, int] = {}
        kept.append(counts)
        if root.error is not None:
            continue
        limit_ns = int(limits[root.name] * _DAY_S * 1e9)
        for entry, reason in zip(root.files, _kept_reasons(root, policy), strict=True):
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
            elif now_ns - entry.mtime_ns > limit_ns:
                selected.append(Deletion(index, entry, "age"))
            elif entry.frees > 0 and now_ns - entry.mtime_ns >= grace_ns:
                spare.append((entry.mtime_ns, index, entry.rel, entry))
    floor = policy.floor
    frees = sum(d.entry.frees for d in selected)
    need = floor - space.free - frees
    if need > 0 and spare:
        spare.sort(key=lambda item: item[:3])
        for _, index, _, entry in spare:
            selected.append(Deletion(index, entry, "floor"))
            frees += entry.frees
            need -= entry.frees
            if need <= 0:
                break
    if need > 0 and spare:  # floor deletions came last: group them with their directories again
        selected.sort(key=lambda d: (d.root, d.entry.rel))
    removals = _removals(roots, selected, policy, now_ns)
    return Plan(roots, policy, space, tuple(selected), removals, tuple(kept), floor, frees)


def _removals(
    roots: tuple[RootSnapshot, ...], selected: list[Deletion], policy: Policy, now_ns: int
) -> tuple[tuple[int, DirEntry], ...]:
    """Directories that hold nothing once the deletions are done: removed if this run emptied them, or
    if they were already empty and older than the directory's age limit. Never a directory given to
    cleanup, never one of the storage layout's own."""
    limits = {d.name: d.max_age_days for d in policy.dirs}
    excluded = _matcher(policy.excludes)
    going: dict[int, set[str]] = {}
    for deletion in selected:
        going.setdefault(deletion.root, set()).add(deletion.entry.rel)
    out: list[tuple[int, DirEntry]] = []
    for index, root in enumerate(roots):
        if root.error is not None or len(root.dirs) < 2:
            continue
        limit_ns = int(limits[root.name] * _DAY_S * 1e9)
        gone = going.get(index, set())
        remaining: dict[str, int] = {}  # rel -> entries that stay
        emptied: set[str] = set()  # dirs in which this run deletes something
        for f in root.files:
            parent = f.rel.rpartition("/")[0]
            if f.rel in gone:
                emptied.add(parent)
            else:
                remaining[parent] = remaining.get(parent, 0) + 1
        base = str(root.path)
        for d in reversed(root.dirs):  # children before parents
            parent = d.rel.rpartition("/")[0]
            removable = (
                d.rel != ""
                and not d.pinned
                and remaining.get(d.rel, 0) == 0
                and (d.rel in emptied or now_ns - d.mtime_ns > limit_ns)
                and f"{base}/{d.rel}" not in policy.keep_dirs
                and f"{base}/{d.rel}" not in policy.keep
                and not (excluded is not None and (excluded(d.rel) or excluded(d.rel.rpartition("/")[2])))
            )
            if removable:
                out.append((index, d))
                emptied.add(parent)
            elif d.rel:
                remaining[parent] = remaining.get(parent, 0) + 1
    out.sort(key=lambda item: (item[0], -item[1].rel.count("/"), item[1].rel))
    return tuple(out)


# -- apply -------------------------------------------------------------------------------------------------


class VideoGuard(Protocol):
    """Keeps the state store right about archived videos that cleanup deletes (see the module docstring)."""

    def claim(self, paths: list[str]) -> set[str]:
        """Mark these to-be-deleted files as removed; return those that must not be deleted after all."""
        ...

    def release(self, paths: list[str]) -> None:
        """These claimed files could not be deleted."""
        ...


@dataclass(frozen=True)
class Failure:
    path: Path
    reason: str


@dataclass
class Applied:
    files: list[int]
    bytes: list[int]
    by_floor: list[int]
    dirs_removed: list[int]
    failed: list[int]
    failures: list[Failure] = field(default_factory=list)
    failure_count: int = 0
    changed: list[int] = field(default_factory=list)
    """Files left alone because they changed since the plan (or an orchestrate took them up)."""
    vanished: list[int] = field(default_factory=list)
    interrupted: bool = False


FileEvent = Callable[[str, Path, FileEntry | None, str], None]
"""(action, path, entry, detail): ``deleted`` / ``failed`` / ``kept`` / ``vanished`` with reason or why."""


class _Opener:
    """Descriptors of the directories of one snapshot, opened one component at a time with ``O_NOFOLLOW``
    and checked to be the directories the snapshot saw. Sorted access reuses the open chain."""

    def __init__(self, root: RootSnapshot, storage_root: Path) -> None:
        self.root = root
        self.storage_root = storage_root
        self.dirs = {d.rel: d for d in root.dirs}
        self.chain: list[tuple[str, int]] = []
        self.dead: dict[str, _Unusable] = {}
        self.unchanged: dict[str, bool] = {}
        """Per directory: its mtime was the walk's when it was first opened here, so no name in it was
        added, removed or renamed since: each name still names the file the walk saw."""

    def __enter__(self) -> _Opener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_to(0)

    def close_to(self, depth: int) -> None:
        while len(self.chain) > depth:
            os.close(self.chain.pop()[1])

    def open(self, rel: str) -> int:
        """A descriptor of the directory ``rel`` (``""``: the root); raises :class:`_Unusable`."""
        if self.chain and self.chain[-1][0] == rel:
            return self.chain[-1][1]
        wanted = [""] + [rel[:i] for i, ch in enumerate(rel) if ch == "/"] + ([rel] if rel else [])
        for depth, name in enumerate(wanted):
            if name in self.dead:
                raise self.dead[name]
            if depth < len(self.chain) and self.chain[depth][0] == name:
                continue
            self.close_to(depth)
            try:
                self.chain.append((name, self._open_one(name)))
            except _Unusable as exc:
                self.dead[name] = exc
                raise
        self.close_to(len(wanted))
        return self.chain[-1][1]

    def _open_one(self, rel: str) -> int:
        shown = str(self.root.path / rel) if rel else str(self.root.path)
        if not rel:
            fd = _open_root(self.root.path, self.storage_root)
        else:
            name, parent_fd = rel.rpartition("/")[2], self.chain[-1][1]
            try:
                fd = os.open(name, _O_DIR, dir_fd=parent_fd)
            except OSError as exc:
                raise _open_error(exc, shown, name, parent_fd) from None
        info = os.fstat(fd)
        seen = self.dirs.get(rel)
        if seen is None or (info.st_dev, info.st_ino) != (self.root.dev, seen.ino):
            os.close(fd)
            raise _Unusable(f"{shown} was replaced since the plan")
        self.unchanged.setdefault(rel, info.st_mtime_ns == seen.mtime_ns)
        return fd


def apply(
    plan: Plan,
    *,
    storage_root: Path,
    guard: VideoGuard | None = None,
    guarded: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_file: FileEvent | None = None,
    chunk: int = 512,
) -> Applied:
    """Carry out ``plan`` (see the module docstring); a file that cannot be deleted is reported, the rest
    goes on. ``guarded``: the absolute paths the guard must claim before they are deleted."""
    n = len(plan.roots)
    done = Applied([0] * n, [0] * n, [0] * n, [0] * n, [0] * n, changed=[0] * n, vanished=[0] * n)
    total = len(plan.deletions)
    guarded = guarded or {}
    bases = [str(root.path) for root in plan.roots]
    position = 0
    openers = [_Opener(root, storage_root) for root in plan.roots]
    try:
        while position < total:
            if stop is not None and stop.is_set():
                done.interrupted = True
                break
            batch = plan.deletions[position : position + chunk]
            refused: set[str] = set()
            unclaimed: list[str] = []
            if guarded:  # only paths the videos table names need the state store's word
                paths = [f"{bases[d.root]}/{d.entry.rel}" for d in batch]
                claimed = [p for p in paths if p in guarded]
                refused = guard.claim(claimed) if guard is not None and claimed else set()
            for deletion in batch:
                path = f"{bases[deletion.root]}/{deletion.entry.rel}" if guarded else ""
                if path in refused:
                    done.changed[deletion.root] += 1
                    if on_file is not None:
                        on_file("kept", Path(path), deletion.entry, "orchestrate took it up since the plan")
                    continue
                if not _delete(deletion, openers[deletion.root], done, on_file) and path in guarded:
                    unclaimed.append(path)
            if guard is not None and unclaimed:
                guard.release(unclaimed)
            position += len(batch)
            if on_progress is not None:
                on_progress(position, total)
        if not done.interrupted:
            for index, entry in plan.removals:
                _remove_dir(index, entry, openers[index], done)
    finally:
        for opener in openers:
            opener.close_to(0)
    return done


def _fail(done: Applied, index: int, path: Path, reason: str) -> None:
    done.failed[index] += 1
    done.failure_count += 1
    if len(done.failures) < REPORTED_LIMIT:
        done.failures.append(Failure(path, reason))


def _delete(deletion: Deletion, opener: _Opener, done: Applied, on_file: FileEvent | None) -> bool:
    """Delete one planned file; True when it is gone. (The hot loop: no Path unless something is said.)"""
    index, entry = deletion.root, deletion.entry
    parent, _, name = entry.rel.rpartition("/")
    try:
        dir_fd = opener.open(parent)
        if not opener.unchanged[parent]:  # names in it changed since the walk: is this still the file?
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_ino != entry.ino or st.st_mtime_ns != entry.mtime_ns:
                done.changed[index] += 1
                if on_file is not None:
                    on_file("kept", opener.root.path / entry.rel, entry, "changed since the plan")
                return False
        os.unlink(name, dir_fd=dir_fd)
    except _Unusable as exc:
        if exc.vanished:
            done.vanished[index] += 1
            return False
        _fail(done, index, opener.root.path / entry.rel, exc.reason)
        if on_file is not None:
            on_file("failed", opener.root.path / entry.rel, entry, exc.reason)
        return False
    except FileNotFoundError:
        done.vanished[index] += 1
        if on_file is not None:
            on_file("vanished", opener.root.path / entry.rel, entry, "gone before cleanup reached it")
        return False
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _fail(done, index, opener.root.path / entry.rel, reason)
        if on_file is not None:
            on_file("failed", opener.root.path / entry.rel, entry, reason)
        return False
    done.files[index] += 1
    done.bytes[index] += entry.size
    if deletion.why == "floor":
        done.by_floor[index] += 1
    if on_file is not None:
        on_file("deleted", opener.root.path / entry.rel, entry, deletion.why)
    return True


def _remove_dir(index: int, entry: DirEntry, opener: _Opener, done: Applied) -> None:
    parent, _, name = entry.rel.rpartition("/")
    try:
        dir_fd = opener.open(parent)
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode) or st.st_ino != entry.ino:
            return  # replaced since the plan: not ours to remove
        os.rmdir(name, dir_fd=dir_fd)
    except _Unusable:
        return  # its parent is gone or replaced: the files in it already say so
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            return  # gone already, or something new arrived in it: it stays
        _fail(done, index, opener.root.path / entry.rel, exc.strerror or str(exc))
        return
    done.dirs_removed[index] += 1


# -- the job -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryReport:
    name: str
    path: Path
    max_age_days: float
    files: int
    """Files deleted (with ``dry_run``: that would be)."""
    bytes: int
    by_floor: int
    """Of ``files``: deleted for the free-space floor rather than for their age."""
    dirs_removed: int
    failed: int
    kept: Mapping[str, int]
    """Files never deleted here, by reason (protected, excluded, changed since the plan)."""
    error: str | None = None


@dataclass(frozen=True)
class CleanupReport:
    storage_root: Path
    dry_run: bool
    directories: tuple[DirectoryReport, ...]
    files: int
    bytes: int
    free_before: int
    free_after: int
    """Measured after the run (with ``dry_run``: the estimate)."""
    total_space: int
    floor: int
    """Free space wanted, in bytes (0: no floor)."""
    floor_met: bool
    failed: int
    failures: tuple[Failure, ...]
    """The first failures with their reasons (``failed`` counts them all)."""
    skipped: tuple[Skipped, ...]
    """Directories of the policy that are never cleaned, and paths not entered (symlinks, mounts)."""
    skipped_count: int
    interrupted: bool = False
    run_id: int | None = None
    logline: Path | None = None
    loglines_removed: int = 0
    """LogLines removed because a verified export holds them and ``retention_days.loglines`` passed."""

    @property
    def outcome(self) -> JobOutcome:
        if self.floor and not self.floor_met:
            return JobOutcome.FAILED
        if self.failed:
            return JobOutcome.WARNING
        return JobOutcome.OK

    @property
    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        text = f"{verb} {self.files} files ({format_bytes(self.bytes)}) in {len(self.directories)} directories"
        if self.failed:
            text += f"; {self.failed} could not be deleted"
        text += f"; free space {format_bytes(self.free_after)}"
        if self.floor:
            met = "met" if self.floor_met else "NOT met"
            text += f" (floor {format_bytes(self.floor)} {met})"
        if self.loglines_removed:
            text += f"; {self.loglines_removed} exported LogLines removed"
        if self.interrupted:
            text += "; stopped before the end"
        return text


def remove_exported_loglines(settings: Settings, *, now: datetime) -> int:
    """Remove LogLines that a verified export holds (:func:`vvctl.ops.export.prune.removable_loglines`)
    once they are older than ``retention_days.loglines``; never without that setting. Returns how many.

    The removable files come oldest first, log by log, and only a prefix of each log is removed (the first
    record still too young stops its log), so the chain left on the box always starts where an export's
    signed manifest anchors it.
    """
    days = settings.retention_days.get("loglines")
    if days is None:
        return 0
    from vvctl.ops.export.prune import removable_loglines

    cutoff = now.timestamp() - days * 86400
    stopped: set[Path] = set()
    removed: list[Path] = []
    with storage_errors("removing exported LogLines"):
        try:
            for path in removable_loglines(settings):
                if path.parent in stopped:
                    continue
                if path.name.endswith(".logline.json") and path.stat().st_mtime >= cutoff:
                    stopped.add(path.parent)
                    continue
                path.unlink(missing_ok=True)
                removed.append(path)
        finally:
            for directory in sorted({p.parent for p in removed}):
                fsync_dir(directory)
    return sum(1 for p in removed if p.name.endswith(".logline.json"))


def _normalise(raw: str) -> Path:
    path = Path(os.path.abspath(Path(raw).expanduser()))  # noqa: PTH100 - lexical, no symlink followed
    # Resolve symlinks above the last component only: a symlink there is refused when it is opened.
    return Path(os.path.realpath(path.parent)) / path.name if path.name else path


def resolve_policy(
    settings: Settings,
    layout: StorageLayout,
    *,
    dirs: Sequence[str] = (),
    days: float | None = None,
    excludes: Sequence[str] = (),
    floor: FreeSpaceFloor | None = None,
    allow_outside: bool = False,
    space: DiskSpace,
    extra_keep: Iterable[Path] = (),
) -> tuple[Policy, list[Skipped]]:
    """The policy from the config and the options; a directory that may not be cleaned is a
    :class:`UsageError` when named on the command line and skipped (with the reason) when configured."""
    if days is not None and days < 0:
        raise UsageError("--days must be 0 or more")
    root = layout.root
    skipped: list[Skipped] = []
    chosen: list[DirPolicy] = []
    names = [part.strip() for item in dirs for part in item.split(",") if part.strip()]
    if not names:
        for name, limit in sorted(settings.retention_days.items()):
            if name in NEVER_CLEANED:
                skipped.append(Skipped(root / name, f"{name}/ is never cleaned ({_why_never(name)})"))
                continue
            chosen.append(DirPolicy(name, root / name, float(days if days is not None else limit)))
    for raw in names:
        chosen.append(_named_dir(raw, settings, layout, days, allow_outside))
    for a in chosen:
        for b in chosen:
            if a is not b and (a.path == b.path or a.path in b.path.parents):
                raise UsageError(f"--dirs: {a.path} is {'named twice' if a.path == b.path else f'inside {b.path}'}")
    keep = {str(p): "vvctl's own file" for p in extra_keep}
    keep[str(settings.key_store)] = "the key store"
    if settings.config_path is not None:
        keep[str(settings.config_path)] = "the config file"
    keep[str(layout.logs / LOG_FILE)] = "the live log"
    return (
        Policy(
            dirs=tuple(chosen),
            floor=(floor if floor is not None else FreeSpaceFloor(int(settings.min_free_space_gb * GB))).resolve(
                space.total
            ),
            excludes=tuple(excludes),
            keep=keep,
            keep_dirs=frozenset(str(p) for p in layout.directories()),
            input_dir=layout.input,
            video_extensions=frozenset(e.lower() for e in settings.video_extensions),
        ),
        skipped,
    )


def _why_never(name: str) -> str:
    return {
        "state": "the key store and the state database",
        "models": "the detection models",
        "loglines": "LogLines are the audit trail",
    }[name]


def _named_dir(raw: str, settings: Settings, layout: StorageLayout, days: float | None, outside: bool) -> DirPolicy:
    root = layout.root
    if raw in DIRECTORIES:
        path = root / raw
    elif "/" not in raw and not raw.startswith("."):
        known = ", ".join(n for n in DIRECTORIES if n not in NEVER_CLEANED)
        raise UsageError(f"--dirs {raw!r}: not a storage directory ({known}) nor a path (give ./{raw} for one)")
    else:
        path = _normalise(raw)
    inside = path == root or root in path.parents
    if inside:
        rel = path.relative_to(root)
        if not rel.parts:
            raise UsageError("--dirs: not the storage root itself; name its directories (e.g. processed,logs)")
        if rel.parts[0] in NEVER_CLEANED:
            raise UsageError(f"--dirs {raw!r}: {rel.parts[0]}/ is never cleaned ({_why_never(rel.parts[0])})")
    else:
        if not outside:
            raise UsageError(f"--dirs {raw!r}: {path} is outside the storage root {root}; add --allow-outside")
        if str(path) in SYSTEM_DIRECTORIES or path == Path(path.anchor) or path in root.parents:
            raise UsageError(f"--dirs {raw!r}: refusing to clean {path}")
    parts = path.relative_to(root).parts if inside else ()
    name = parts[0] if len(parts) == 1 and parts[0] in DIRECTORIES else str(path)
    limit = days if days is not None else settings.retention_days.get(name)
    if limit is None:
        raise UsageError(f"--dirs {raw!r}: no retention_days for it in the config; give --days")
    return DirPolicy(name, path, float(limit))


class _StateGuard:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    def claim(self, paths: list[str]) -> set[str]:
        return self.store.mark_videos_removed(paths)

    def release(self, paths: list[str]) -> None:
        self.store.unmark_videos_removed(paths)


class _FileLog:
    """``--log-file``: one JSON line per file deleted, failed, left alone or (dry run) that would be deleted."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        try:
            self.stream: IO[str] = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise StorageError(f"cannot open --log-file {path}: {exc.strerror or exc}") from exc

    def __call__(self, action: str, path: Path, entry: FileEntry | None, detail: str) -> None:
        record: dict[str, object] = {"when": rfc3339(self.clock()), "action": action, "path": str(path)}
        if entry is not None:
            record["bytes"] = entry.size
            record["mtime"] = rfc3339(datetime.fromtimestamp(entry.mtime_ns / 1e9, UTC))
        record["why" if action in ("deleted", "would delete") else "reason"] = detail
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.stream.close()


def _prepare(
    settings: Settings,
    layout: StorageLayout,
    *,
    dirs: Sequence[str],
    days: float | None,
    excludes: Sequence[str],
    floor: FreeSpaceFloor | None,
    allow_outside: bool,
    log_file: Path | None,
    space_of: Callable[[Path], DiskSpace],
    clock: Clock,
    store: StateStore | None,
) -> tuple[Plan, list[Skipped], dict[str, str]]:
    space = space_of(layout.root)
    extra = [Path(os.path.abspath(log_file))] if log_file is not None else []  # noqa: PTH100
    policy, skipped = resolve_policy(
        settings,
        layout,
        dirs=dirs,
        days=days,
        excludes=excludes,
        floor=floor,
        allow_outside=allow_outside,
        space=space,
        extra_keep=extra,
    )
    if store is not None:
        videos = store.video_files()
    elif layout.state_db.exists():
        with StateStore(layout.state_db) as opened:
            videos = opened.video_files()
    else:
        videos = {}
    keep = dict(policy.keep)
    guarded: dict[str, str] = {}
    for path, status in videos.items():
        if status in UNFINISHED_VIDEO_STATUSES:
            keep[path] = f"a video that is not done ({status})"
        else:
            guarded[path] = status
    policy = replace(policy, keep=keep)
    never = [layout.root / name for name in NEVER_CLEANED]
    roots = snapshot(policy.dirs, storage_root=layout.root, never=never)
    return plan(roots, policy, now=clock(), space=space), skipped, guarded


def _report(
    the_plan: Plan,
    skipped: list[Skipped],
    *,
    dry_run: bool,
    free_after: int,
    applied: Applied | None,
    layout: StorageLayout,
) -> CleanupReport:
    directories: list[DirectoryReport] = []
    all_skipped = list(skipped)
    for index, root in enumerate(the_plan.roots):
        kept = dict(the_plan.kept[index])
        all_skipped.extend(root.skipped)
        if applied is not None:
            files, size = applied.files[index], applied.bytes[index]
            by_floor, removed, failed = applied.by_floor[index], applied.dirs_removed[index], applied.failed[index]
            if applied.changed[index]:
                kept["changed since the plan"] = applied.changed[index]
            if applied.vanished[index]:
                kept["gone before cleanup reached it"] = applied.vanished[index]
        else:
            mine = [d for d in the_plan.deletions if d.root == index]
            files, size = len(mine), sum(d.entry.size for d in mine)
            by_floor = sum(1 for d in mine if d.why == "floor")
            removed, failed = sum(1 for i, _ in the_plan.removals if i == index), 0
        limit = next(d.max_age_days for d in the_plan.policy.dirs if d.name == root.name)
        directories.append(
            DirectoryReport(root.name, root.path, limit, files, size, by_floor, removed, failed, kept, root.error)
        )
    failures = tuple(applied.failures) if applied is not None else ()
    failed = (applied.failure_count if applied is not None else 0) + sum(1 for r in the_plan.roots if r.error)
    failures = failures + tuple(Failure(r.path, r.error) for r in the_plan.roots if r.error is not None)
    floor = the_plan.floor
    return CleanupReport(
        storage_root=layout.root,
        dry_run=dry_run,
        directories=tuple(directories),
        files=sum(d.files for d in directories),
        bytes=sum(d.bytes for d in directories),
        free_before=the_plan.space.free,
        free_after=free_after,
        total_space=the_plan.space.total,
        floor=floor,
        floor_met=free_after >= floor,
        failed=failed,
        failures=failures[:REPORTED_LIMIT],
        skipped=tuple(all_skipped[:REPORTED_LIMIT]),
        skipped_count=len(all_skipped),
        interrupted=applied.interrupted if applied is not None else False,
    )


def _layout(settings: Settings) -> StorageLayout:
    layout = StorageLayout(check_storage_root(settings.storage_root))
    if not layout.state.is_dir():
        raise StorageError(f"storage root {layout.root} is not set up (state/ is missing); run 'vvctl bootstrap' first")
    return layout


def preview(
    settings: Settings,
    *,
    dirs: Sequence[str] = (),
    days: float | None = None,
    excludes: Sequence[str] = (),
    floor: FreeSpaceFloor | None = None,
    allow_outside: bool = False,
    log_file: Path | None = None,
    clock: Clock = utcnow,
    space_of: Callable[[Path], DiskSpace] = disk_space,
) -> CleanupReport:
    """The dry run: what :func:`cleanup` would delete now. Deletes nothing, records nothing."""
    layout = _layout(settings)
    the_plan, skipped, _ = _prepare(
        settings,
        layout,
        dirs=dirs,
        days=days,
        excludes=excludes,
        floor=floor,
        allow_outside=allow_outside,
        log_file=log_file,
        space_of=space_of,
        clock=clock,
        store=None,
    )
    if log_file is not None:
        sink = _FileLog(log_file, clock)
        try:
            for d in the_plan.deletions:
                sink("would delete", the_plan.roots[d.root].path / d.entry.rel, d.entry, d.why)
        finally:
            sink.close()
    estimate = the_plan.space.free + the_plan.frees
    return _report(the_plan, skipped, dry_run=True, free_after=estimate, applied=None, layout=layout)


def cleanup(
    settings: Settings,
    *,
    dirs: Sequence[str] = (),
    days: float | None = None,
    excludes: Sequence[str] = (),
    floor: FreeSpaceFloor | None = None,
    allow_outside: bool = False,
    log_file: Path | None = None,
    clock: Clock = utcnow,
    stop: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    space_of: Callable[[Path], DiskSpace] = disk_space,
) -> JobRunResult[CleanupReport]:
    """Delete what the policy says may go, as the ``cleanup`` job (lock, job-run record, signed LogLine)."""
    layout = _layout(settings)

    def body(ctx: JobContext) -> CleanupReport:
        the_plan, skipped, guarded = _prepare(
            settings,
            layout,
            dirs=dirs,
            days=days,
            excludes=excludes,
            floor=floor,
            allow_outside=allow_outside,
            log_file=log_file,
            space_of=space_of,
            clock=ctx.clock,
            store=ctx.state,
        )
        ctx.progress = f"planned {len(the_plan.deletions)} deletions"
        sink = _FileLog(log_file, ctx.clock) if log_file is not None else None
        debug = ctx.log.isEnabledFor(logging.DEBUG)

        def on_file(action: str, path: Path, entry: FileEntry | None, detail: str) -> None:
            if sink is not None:
                sink(action, path, entry, detail)
            if debug:
                ctx.log.debug(action, extra={"path": str(path), "detail": detail})

        def progress(done: int, total: int) -> None:
            ctx.progress = f"deleted {done} of {total} planned files"
            if on_progress is not None:
                on_progress(done, total)

        try:
            applied = apply(
                the_plan,
                storage_root=layout.root,
                guard=_StateGuard(ctx.state),
                guarded=guarded,
                stop=ctx.stop,
                on_progress=progress,
                on_file=on_file if sink is not None or debug else None,
            )
        finally:
            if sink is not None:
                sink.close()
        for failure in applied.failures:
            ctx.log.warning("could not delete", extra={"path": str(failure.path), "reason": failure.reason})
        if applied.failure_count > len(applied.failures):
            ctx.log.warning("more files could not be deleted", extra={"count": applied.failure_count})
        pruned = 0 if dirs or ctx.stop.is_set() else remove_exported_loglines(settings, now=ctx.clock())
        report = _report(
            the_plan, skipped, dry_run=False, free_after=space_of(layout.root).free, applied=applied, layout=layout
        )
        report = replace(report, loglines_removed=pruned)
        for directory in report.directories:
            ctx.log.info(
                "cleaned a directory",
                extra={
                    "directory": str(directory.path),
                    "files": directory.files,
                    "bytes": directory.bytes,
                    "dirs_removed": directory.dirs_removed,
                    "failed": directory.failed,
                },
            )
        return report

    result = run_job(settings, SPEC, body, clock=clock, stop=stop, layout=layout)
    return replace(result, report=replace(result.report, run_id=result.run_id, logline=result.logline))


__all__ = [
    "GRACE_S",
    "NEVER_CLEANED",
    "SPEC",
    "Applied",
    "CleanupReport",
    "Deletion",
    "DirEntry",
    "DirPolicy",
    "DirectoryReport",
    "DiskSpace",
    "Failure",
    "FileEntry",
    "FreeSpaceFloor",
    "Plan",
    "Policy",
    "RootSnapshot",
    "Skipped",
    "apply",
    "cleanup",
    "disk_space",
    "format_bytes",
    "parse_free_space",
    "plan",
    "preview",
    "resolve_policy",
    "snapshot",
]
