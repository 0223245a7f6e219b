"""Which camera a video comes from and when it started, in wall-clock UTC.

Recorders say it in the path: ``cam1/2026-12-01/143000.mp4`` or ``CAM1_20261201_143000.mp4``. The
configured ``source_path_patterns`` are tried in order against the path relative to ``input/`` (without
the extension); ``{camera}``, ``{date:FORMAT}`` and ``{time:FORMAT}`` are the fields (strftime codes
``%Y %m %d %H %M %S`` and ``%y``). A path time is the recorder's local time in ``source_timezone``.
Without a path time, the MP4/MOV container's ``creation_time`` (``mvhd``, UTC by the standard) is used,
else the file's mtime; the analytic records which (``time_source``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from zoneinfo import ZoneInfo

DEFAULT_CAMERA = "input"
"""The camera of a video directly in ``input/`` whose name no pattern matches."""

_MP4_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)
_CODES = {
    "%Y": r"\d{4}",
    "%y": r"\d{2}",
    "%m": r"\d{2}",
    "%d": r"\d{2}",
    "%H": r"\d{2}",
    "%M": r"\d{2}",
    "%S": r"\d{2}",
}
_FIELD = re.compile(r"\{(camera|date|time)(?::([^}]*))?\}")


class TimeSource(StrEnum):
    PATH = "path"
    CONTAINER = "container"
    MTIME = "mtime"


@dataclass(frozen=True)
class SourceIdentity:
    camera: str
    start: datetime
    """Wall-clock start of the video, UTC."""
    time_source: TimeSource
    pattern: str | None
    """The path pattern that matched, if one did."""


class PatternError(ValueError):
    """A ``source_path_patterns`` entry that cannot be used."""


@dataclass(frozen=True)
class _Compiled:
    text: str
    regex: re.Pattern[str]
    date_format: str | None
    time_format: str | None


def _format_regex(fmt: str, pattern: str) -> str:
    out = ""
    position = 0
    for match in re.finditer(r"%.", fmt):
        out += re.escape(fmt[position : match.start()])
        code = match.group(0)
        if code not in _CODES:
            raise PatternError(f"source path pattern {pattern!r}: unsupported code {code} (use %Y %y %m %d %H %M %S)")
        out += _CODES[code]
        position = match.end()
    return out + re.escape(fmt[position:])


@lru_cache(maxsize=64)
def compile_pattern(pattern: str) -> _Compiled:
    """``{camera}/{date:%Y-%m-%d}/{time:%H%M%S}`` → a regex over the relative path without extension."""
    regex = ""
    position = 0
    formats: dict[str, str] = {}
    for match in _FIELD.finditer(pattern):
        regex += re.escape(pattern[position : match.start()])
        name, fmt = match.group(1), match.group(2)
        if name in formats:
            raise PatternError(f"source path pattern {pattern!r}: {{{name}}} appears twice")
        if name == "camera":
            regex += r"(?P<camera>[^/]+?)"
            formats["camera"] = ""
        else:
            if not fmt:
                raise PatternError(
                    f"source path pattern {pattern!r}: {{{name}}} needs a format, e.g. {{{name}:%Y%m%d}}"
                )
            regex += f"(?P<{name}>{_format_regex(fmt, pattern)})"
            formats[name] = fmt
        position = match.end()
    regex += re.escape(pattern[position:])
    if "date" not in formats:
        raise PatternError(f"source path pattern {pattern!r}: needs a {{date:FORMAT}} field")
    # Anchored at a folder boundary on the left; any rest of the name (``_part2``) allowed on the right.
    return _Compiled(pattern, re.compile(rf"(?:^|/){regex}(?:[^0-9/][^/]*)?$"), formats["date"], formats.get("time"))


def check_patterns(patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        compile_pattern(pattern)


def _from_path(
    relative: PurePosixPath, patterns: tuple[str, ...], zone: ZoneInfo
) -> tuple[str | None, datetime, str] | None:
    text = str(relative.with_suffix("")) if relative.suffix else str(relative)
    for pattern in patterns:
        compiled = compile_pattern(pattern)
        match = compiled.regex.search(text)
        if match is None:
            continue
        fmt = compiled.date_format or ""
        value = match.group("date")
        if compiled.time_format is not None:
            fmt += "\x00" + compiled.time_format
            value += "\x00" + match.group("time")
        try:
            local = datetime.strptime(value, fmt)
        except ValueError:
            continue  # 20261399: not a date after all
        camera = match.groupdict().get("camera")
        return camera, local.replace(tzinfo=zone).astimezone(UTC), pattern
    return None


def container_creation_time(path: Path) -> datetime | None:
    """``creation_time`` of an MP4/MOV file's ``moov/mvhd`` box (UTC), None when absent, zero or unreadable."""
    try:
        with path.open("rb") as fh:
            size = path.stat().st_size
            moov = _find_box(fh, 0, size, b"moov")
            if moov is None:
                return None
            mvhd = _find_box(fh, moov[0], moov[1], b"mvhd")
            if mvhd is None:
                return None
            fh.seek(mvhd[0])
            head = fh.read(12)
    except OSError:
        return None
    if len(head) < 8:
        return None
    version = head[0]
    if version == 1:
        if len(head) < 12:
            return None
        seconds = struct.unpack(">Q", head[4:12])[0]
    else:
        seconds = struct.unpack(">I", head[4:8])[0]
    if seconds == 0:
        return None
    try:
        return _MP4_EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _find_box(stream: BinaryIO, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """(payload start, payload end) of the first box ``kind`` between ``start`` and ``end``."""
    position = start
    for _ in range(4096):
        if position + 8 > end:
            return None
        stream.seek(position)
        header = stream.read(16)
        if len(header) < 8:
            return None
        box_size, box_type = struct.unpack(">I4s", header[:8])
        payload = position + 8
        if box_size == 1:
            if len(header) < 16:
                return None
            box_size = struct.unpack(">Q", header[8:16])[0]
            payload = position + 16
        elif box_size == 0:
            box_size = end - position
        if box_size < 8:
            return None
        if box_type == kind:
            return payload, min(position + box_size, end)
        position += box_size
    return None


def identify(
    path: Path,
    input_root: Path,
    *,
    patterns: tuple[str, ...],
    timezone: str,
    mtime_ns: int,
) -> SourceIdentity:
    """Camera and wall-clock start of the video at ``path`` (still under ``input_root``)."""
    try:
        relative = PurePosixPath(path.relative_to(input_root).as_posix())
    except ValueError:
        relative = PurePosixPath(path.name)
    folder_camera = relative.parts[0] if len(relative.parts) > 1 else None
    found = _from_path(relative, patterns, ZoneInfo(timezone))
    if found is not None:
        camera, start, pattern = found
        return SourceIdentity(camera or folder_camera or DEFAULT_CAMERA, start, TimeSource.PATH, pattern)
    camera_name = folder_camera or DEFAULT_CAMERA
    created = container_creation_time(path)
    if created is not None:
        return SourceIdentity(camera_name, created, TimeSource.CONTAINER, None)
    return SourceIdentity(camera_name, datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC), TimeSource.MTIME, None)
