"""Space kept in reserve so that a job stopped by a full disk can still record why it stopped.

A job holds :data:`RESERVE_BYTES` of really allocated blocks in ``state/disk-reserve`` while it runs.
When a write fails because the disk is full, the job releases the reserve and only then writes its
bookkeeping (the attempt given back, the job's LogLine, the job-run row): those few small writes fit in
the freed space, so a full disk is never counted against a video and no job row is left ``running``.
The next run allocates the reserve again before it touches anything, or stops at once with exit 6 when
even that does not fit.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from vvctl.core.atomic import fsync_dir
from vvctl.core.errors import DiskFullError, StorageError
from vvctl.core.state import disk_full_message, free_bytes

RESERVE_BYTES = 1024 * 1024
RESERVE_NAME = "disk-reserve"


class SpaceReserve:
    """``state/disk-reserve``: allocated by :meth:`acquire`, freed by :meth:`release` when the disk is full."""

    def __init__(self, directory: Path, size: int = RESERVE_BYTES) -> None:
        self.path = directory / RESERVE_NAME
        self.size = size
        self.held = False

    def acquire(self) -> None:
        """Make sure the reserve exists at full size (real blocks, not a sparse file); DiskFullError if not."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._error(exc) from exc
        try:
            if os.fstat(fd).st_blocks * 512 < self.size:
                try:
                    os.posix_fallocate(fd, 0, self.size)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    os.pwrite(fd, b"\0" * self.size, 0)  # a file system without fallocate
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.unlink()  # a partial reserve is no reserve; give the blocks back
            raise self._error(exc) from exc
        os.close(fd)
        fsync_dir(self.path.parent)
        self.held = True

    def missing_bytes(self) -> int:
        """How much :meth:`acquire` still has to allocate (0 when the reserve is in place)."""
        try:
            allocated = self.path.stat().st_blocks * 512
        except FileNotFoundError:
            allocated = 0
        return max(self.size - allocated, 0)

    def release(self) -> bool:
        """Free the reserve (the disk is full and the job must record why it stops). True if it was held."""
        if not self.held:
            return False
        self.held = False
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        fsync_dir(self.path.parent)
        return True

    def _error(self, exc: OSError) -> StorageError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFullError(disk_full_message(self.path.parent, free_bytes(self.path.parent)))
        return StorageError(f"cannot allocate {self.path}: {exc.strerror or exc}")
