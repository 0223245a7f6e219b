"""The quarantine record: ``corrupted/<name>.error.json`` says why a video was set aside.

The record is written (validated, atomically) before the video is moved, so a video in ``corrupted/``
always has its reason next to it; the move itself is the orchestrator's last step.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vvctl.core.atomic import atomic_write_json
from vvctl.core.names import display, is_text, name_bytes
from vvctl.core.schemas import validate
from vvctl.core.timeutil import Clock, rfc3339, utcnow
from vvctl.core.video import VIDEO_ERROR_REASONS
from vvctl.pipeline.discovery import free_destination

ERROR_SCHEMA = "error.schema.json"
SCHEMA_VERSION = 1
ERROR_SUFFIX = ".error.json"

REASONS: frozenset[str] = VIDEO_ERROR_REASONS | {"timeout", "crashed"}
"""Every reason code an error record may carry: the video errors plus a timed-out or crashing analysis."""


@dataclass(frozen=True)
class QuarantineRecord:
    destination: Path
    """Where the video goes in ``corrupted/``."""
    error_path: Path
    document: dict[str, Any]


def error_path_for(destination: Path) -> Path:
    return destination.with_name(destination.name + ERROR_SUFFIX)


def video_path_for(error_path: Path) -> Path:
    """The quarantined video an ``.error.json`` belongs to (its name without the suffix)."""
    return error_path.with_name(error_path.name[: -len(ERROR_SUFFIX)])


def read_record(path: Path) -> dict[str, Any] | None:
    """A quarantine record, or None when it cannot be read or is not one (never raises)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("kind") != "vvctl.error":
        return None
    return document


def original_name(record: dict[str, Any], video: Path) -> str:
    """The exact name the video arrived with (from ``name_bytes`` when it is not UTF-8), else ``video``'s."""
    details = record.get("video")
    if isinstance(details, dict):
        raw = details.get("name_bytes")
        if isinstance(raw, str):
            try:
                return os.fsdecode(base64.b64decode(raw, validate=True))
            except ValueError:
                pass
        name = details.get("name")
        if isinstance(name, str) and name and "/" not in name:
            return name
    return video.name


def records(corrupted_dir: Path) -> list[Path]:
    """Every ``.error.json`` in ``corrupted/``, by name."""
    try:
        return sorted(p for p in corrupted_dir.iterdir() if p.name.endswith(ERROR_SUFFIX) and p.is_file())
    except FileNotFoundError:
        return []


def _record_sha256(path: Path) -> str | None:
    document = read_record(path)
    try:
        return None if document is None else str(document["video"]["sha256"])
    except (KeyError, TypeError):
        return None


def _destination(corrupted_dir: Path, name: str, sha256: str | None) -> Path:
    """A free name in ``corrupted/`` whose ``.error.json`` is free too, or is an orphan of this same video.

    A record without its video is left by a run that died between the record and the move; it is
    reused for the same content and never overwritten for another. The name leaves room for the
    ``.error.json`` suffix, so a name that is legal in ``input/`` always fits here too.
    """
    reserve = len(ERROR_SUFFIX)
    destination = free_destination(corrupted_dir, name, sha256, reserve=reserve)
    number = 2
    while error_path_for(destination).exists() and (
        sha256 is None or _record_sha256(error_path_for(destination)) != sha256
    ):
        stem, suffix = Path(name).stem, Path(name).suffix
        tag = (sha256 or "unread")[:8]
        destination = free_destination(corrupted_dir, f"{stem}.{tag}.{number}{suffix}", sha256, reserve=reserve)
        number += 1
    return destination


def write_error_record(
    corrupted_dir: Path,
    video: Path,
    *,
    sha256: str | None,
    size: int,
    reason: str,
    message: str,
    attempts: int,
    duplicate_of: str | None = None,
    clock: Clock = utcnow,
) -> QuarantineRecord:
    """Choose the video's name in ``corrupted/`` and write its validated ``.error.json`` there.

    ``sha256`` is None for a file whose content could not be read. Names are shown as text
    (:func:`vvctl.core.names.display`); a name that is not UTF-8 also gets ``name_bytes``, its exact bytes
    in base64.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown quarantine reason {reason!r}")
    destination = _destination(corrupted_dir, video.name, sha256)
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "vvctl.error",
        "video": {
            "name": display(video.name),
            "original_path": display(str(video)),
            "quarantined_path": display(str(destination)),
            "sha256": sha256,
            "size": size,
        },
        "reason": reason,
        "message": message,
        "attempts": attempts,
        "time": rfc3339(clock()),
    }
    if not is_text(video.name):
        document["video"]["name_bytes"] = base64.b64encode(name_bytes(video.name)).decode("ascii")
    if duplicate_of is not None:
        document["duplicate_of"] = display(duplicate_of)
    validate(document, ERROR_SCHEMA)
    path = error_path_for(destination)
    atomic_write_json(path, document)
    return QuarantineRecord(destination=destination, error_path=path, document=document)
