"""Advisory process locks (``flock``) under ``state/``: a second run of a job exits at once."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from vvctl.core.errors import LockedError, StorageError


@contextlib.contextmanager
def exclusive_lock(path: Path, *, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block.

    With ``wait=False`` a lock held by another process raises :class:`LockedError` immediately. The
    kernel drops the lock when the holder dies (even by SIGKILL), so a crash never leaves it stuck.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open lock file {path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _read_holder(fd)
                raise LockedError(
                    f"another {what} is already running{holder}; this one exits without doing anything"
                ) from exc
            raise StorageError(f"cannot lock {path}: {exc.strerror or exc}") from exc
        with contextlib.suppress(OSError):  # the pid is a hint for the message; a full disk must not stop us
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder(path: Path) -> int | None:
    """The pid written by the last holder of the lock at ``path`` when that process is still alive.

    Read without taking the lock (a probe that took it, even for a moment, could make a real run exit 4).
    The pid stays in the file after release, so callers pair this with their own record that the job is
    running (its job-run row).
    """
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by another user
    return pid


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
