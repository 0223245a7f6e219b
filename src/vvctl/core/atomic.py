"""Atomic file writes: temp file in the same directory, fsync, rename, fsync of the directory.

A reader (or a process restarted after SIGKILL or power loss) sees either the old content or the new
content of the target, never a mix and never a truncated file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from vvctl.core.errors import DiskFullError, StorageError
from vvctl.core.names import display, fit

TEMP_PREFIX = ".vvtmp-"
TEMP_NAME_ROOM = 200
"""Bytes of the target's name kept in a temp file's name (prefix, pid and random part fill the rest)."""


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # platforms without directory fds (Windows): nothing more can be done
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))


def _storage_error(path: Path, exc: OSError) -> StorageError:
    if is_disk_full(exc):
        return DiskFullError(f"disk full while writing {display(str(path))}")
    return StorageError(f"cannot write {display(str(path))}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_open(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Yield a binary file handle; on clean exit its content replaces ``path`` atomically.

    On any exception the temp file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    directory = path.parent
    # The temp name must fit NAME_MAX too: only a bounded, readable part of the target's name goes in it.
    readable = fit(display(path.name), limit=TEMP_NAME_ROOM)
    tmp = directory / f"{TEMP_PREFIX}{readable}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise _storage_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _storage_error(path, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_open(path, mode) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def dumps_json(document: Any) -> str:
    """The one JSON layout vvctl writes for people to read: sorted keys, 2-space indent, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def atomic_write_json(path: Path, document: Any, mode: int = 0o644) -> None:
    atomic_write_text(path, dumps_json(document), mode)


def atomic_copy(source: Path, target: Path, mode: int = 0o644) -> None:
    """Copy ``source`` to ``target`` atomically (the target never exists half-copied)."""
    try:
        with source.open("rb") as src, atomic_open(target, mode) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as exc:
        raise StorageError(f"cannot read {display(str(source))}: {exc.strerror or exc}") from exc


def durable_move(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (same filesystem) or copy+fsync+unlink across filesystems."""
    try:
        source.replace(target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise _storage_error(target, exc) from exc
        atomic_copy(source, target)
        source.unlink()
        fsync_dir(source.parent)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


def _writer_alive(temp_name: str) -> bool:
    try:
        pid = int(temp_name.rsplit(".", 2)[1])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path) -> int:
    """Delete temp files whose writer process is gone (killed mid-write). Returns how many."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in directory.iterdir():
            if entry.name.startswith(TEMP_PREFIX) and entry.is_file() and not _writer_alive(entry.name):
                entry.unlink(missing_ok=True)
                removed += 1
    return removed
