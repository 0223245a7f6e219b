"""Small real file systems for disk-full tests: a tmpfs, or a loop-mounted ext4 (1 KiB blocks, no reserved
blocks, as on a small SD card partition), mounted by the test and filled to an exact level.

Mounting needs root (or CAP_SYS_ADMIN) and the ``mount`` tool (``mkfs.ext4`` for ext4); where that is
not possible the tests that need it skip and say why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = ".test-filler"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def mount_problem(kind: str) -> str | None:
    """Why a ``kind`` file system cannot be mounted here, or None."""
    if os.geteuid() != 0:
        return "mounting a test file system needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "the mount tool is not installed"
    if kind == "ext4" and shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is not installed"
    return None


@contextlib.contextmanager
def small_fs(where: Path, kind: str = "tmpfs", size_mib: int = 40) -> Iterator[Path]:
    """Mount a fresh ``kind`` file system of ``size_mib`` MiB on ``where`` (created), unmount afterwards."""
    problem = mount_problem(kind)
    if problem is not None:
        pytest.skip(problem)
    where.mkdir(parents=True, exist_ok=True)
    image = where.with_name(where.name + ".img")
    if kind == "tmpfs":
        done = _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where))
    else:
        with image.open("wb") as fh:
            fh.truncate(size_mib << 20)
        made = _run("mkfs.ext4", "-q", "-F", "-m", "0", "-b", "1024", str(image))
        if made.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
        done = _run("mount", "-o", "loop", str(image), str(where))
    if done.returncode != 0:
        image.unlink(missing_ok=True)
        pytest.skip(f"cannot mount a {kind} here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        _run("umount", "-l", str(where))
        image.unlink(missing_ok=True)


def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def fill(root: Path, leave: int = 0) -> int:
    """Take all free space on ``root``'s file system but ``leave`` bytes (a real ENOSPC follows). Returns
    the bytes still free."""
    filler = root / FILLER
    with filler.open("ab", buffering=0) as fh:
        while (room := free_bytes(root) - leave) > 0:
            try:
                fh.write(b"\0" * min(room, 1 << 20))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        os.fsync(fh.fileno())
    os.sync()
    return free_bytes(root)


def unfill(root: Path) -> None:
    (root / FILLER).unlink(missing_ok=True)
