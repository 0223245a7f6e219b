"""Deterministic, streaming tar.gz: written in one pass with every member hashed on the way, and read back.

The bytes depend only on the files' names, contents and modification times (whole seconds): members
are sorted by name, owner and group are 0 with empty names, the mode is 0644, and the gzip header has
no timestamp (mtime 0) and no file name. The tar format is GNU (stdlib :mod:`tarfile`): GNU tar reads
it, and it stores names over 100 bytes and files over 8 GiB without extended headers.

Each file is opened once without following symlinks, ``fstat``-ed on the open descriptor, and read in
1 MiB chunks that are hashed as tar copies them into the compressor; memory does not grow with file
size. A file still being appended to (the active JSON log) is taken up to the size it had when it was
opened, so its member and its recorded SHA-256 always agree.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from vvctl.core.errors import StorageError

GZIP_LEVEL = 6
"""gzip(1)'s default, so ``tar -czf`` of the same files uses the same level."""
CHUNK = 1 << 20
FILE_MODE = 0o644
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Source:
    """A file to archive: its member name (relative, ``/``-separated) and where it is on disk."""

    name: str
    path: str


@dataclass(frozen=True)
class Member:
    """An archived member as the manifest lists it."""

    path: str
    size: int
    mtime: int
    sha256: str


@dataclass(frozen=True)
class Skipped:
    """A file that was selected but not archived, and why (a symlink, vanished, not a regular file)."""

    path: str
    why: str


@dataclass(frozen=True)
class WrittenArchive:
    members: tuple[Member, ...]
    skipped: tuple[Skipped, ...]
    size: int
    sha256: str
    bytes_in: int


class _HashingSink:
    """The file the compressed stream goes to; hashes and counts what passes."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


class _HashingReader:
    """What tar copies a member from: reads the open descriptor, hashes every byte, reports progress."""

    def __init__(self, fd: int, name: str, progress: Callable[[int], None]) -> None:
        self.fd = fd
        self.name = name
        self.digest = hashlib.sha256()
        self.progress = progress

    def read(self, size: int) -> bytes:
        data = os.read(self.fd, size)
        while len(data) < size:  # os.read may return less than asked before the end of a regular file
            more = os.read(self.fd, size - len(data))
            if not more:
                raise StorageError(f"{self.name} became shorter while it was being exported; run again")
            data += more
        self.digest.update(data)
        self.progress(len(data))
        return data


def _header(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = FILE_MODE
    info.type = tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _open_regular(source: Source) -> tuple[int, os.stat_result] | Skipped:
    try:
        fd = os.open(source.path, _OPEN_FLAGS)
    except FileNotFoundError:
        return Skipped(source.name, "vanished before it was read")
    except OSError as exc:
        if Path(source.path).is_symlink():
            return Skipped(source.name, "a symbolic link (not followed)")
        raise StorageError(f"cannot read {source.path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return Skipped(source.name, "not a regular file")
    return fd, st


def write_archive(
    sources: Sequence[Source],
    raw: IO[bytes],
    *,
    level: int = GZIP_LEVEL,
    on_bytes: Callable[[int], None] = lambda n: None,
    stop: Callable[[], None] = lambda: None,
) -> WrittenArchive:
    """Write the tar.gz of ``sources`` (sorted by name here) to ``raw`` in one pass.

    ``on_bytes`` is told how many input bytes were just archived; ``stop`` is called between files and
    may raise to abandon the archive (the caller then discards what ``raw`` received).
    """
    sink = _HashingSink(raw)
    members: list[Member] = []
    skipped: list[Skipped] = []
    bytes_in = 0
    gz = gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=sink, mtime=0)
    try:
        tar = tarfile.TarFile(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT, copybufsize=CHUNK)
        for source in sorted(sources, key=lambda s: s.name):
            stop()
            opened = _open_regular(source)
            if isinstance(opened, Skipped):
                skipped.append(opened)
                continue
            fd, st = opened
            try:
                mtime = max(0, int(st.st_mtime))
                reader = _HashingReader(fd, source.name, on_bytes)
                tar.addfile(_header(source.name, st.st_size, mtime), reader)  # type: ignore[arg-type]
            finally:
                os.close(fd)
            vars(tar)["members"].clear()  # tar keeps every header otherwise; thousands of LogLines add up
            members.append(Member(source.name, st.st_size, mtime, reader.digest.hexdigest()))
            bytes_in += st.st_size
        tar.close()
        gz.close()
    finally:
        if not gz.closed:
            # Abandoned half-way: close without caring whether the trailer still fits (the caller
            # throws the partial file away), so nothing is left to a finalizer.
            with contextlib.suppress(OSError, ValueError):
                gz.close()
    return WrittenArchive(tuple(members), tuple(skipped), sink.size, sink.digest.hexdigest(), bytes_in)


# -- reading -------------------------------------------------------------------------------------------


class _HashingRawReader:
    """The archive file as the decompressor reads it: every byte hashed and counted."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Hash whatever the tar reader did not need (padding, trailing bytes appended to the file)."""
        while self.read(CHUNK):
            pass


@dataclass(frozen=True)
class ReadMember:
    """A member as found in an archive: its name, tar type, size, mtime and (regular files) SHA-256."""

    name: str
    regular: bool
    size: int
    mtime: int
    sha256: str | None


class ArchiveUnreadable(Exception):
    """The archive is not a complete gzip-compressed tar (the message says where it broke)."""


def read_archive(raw: IO[bytes]) -> tuple[Iterator[ReadMember], _HashingRawReader]:
    """Stream the members of the tar.gz ``raw``, hashing each one's content and the archive's bytes.

    Iterate the first value to the end (it raises :class:`ArchiveUnreadable` for a broken archive), then
    read the second one's ``digest`` and ``size``: they cover the whole file.
    """
    counted = _HashingRawReader(raw)

    def members() -> Iterator[ReadMember]:
        try:
            with (
                gzip.GzipFile(fileobj=cast(IO[bytes], counted), mode="rb") as gz,
                tarfile.open(fileobj=gz, mode="r|", bufsize=CHUNK) as tar,
            ):
                for info in tar:
                    digest: str | None = None
                    if info.isreg():
                        content = tar.extractfile(info)
                        assert content is not None
                        hasher = hashlib.sha256()
                        while chunk := content.read(CHUNK):
                            hasher.update(chunk)
                        digest = hasher.hexdigest()
                    yield ReadMember(info.name, info.isreg(), info.size, int(info.mtime), digest)
                # The end-of-archive blocks are read; what follows inside the gzip stream must be zeros.
                while chunk := gz.read(CHUNK):
                    if chunk.strip(b"\0"):
                        raise ArchiveUnreadable("data after the end of the tar archive")
        except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
            raise ArchiveUnreadable(_describe(exc)) from None
        counted.drain()

    return members(), counted


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the gzip stream ends early (truncated)"
    if isinstance(exc, gzip.BadGzipFile):
        return f"not a valid gzip stream ({exc})"
    if isinstance(exc, zlib.error):
        return "the compressed data is corrupt"
    if isinstance(exc, tarfile.TarError):
        return f"not a valid tar archive ({exc})"
    return f"cannot be read ({exc})"


__all__ = [
    "CHUNK",
    "GZIP_LEVEL",
    "ArchiveUnreadable",
    "Member",
    "ReadMember",
    "Skipped",
    "Source",
    "WrittenArchive",
    "read_archive",
    "write_archive",
]
