"""The quarantine record: ``corrupted/<name>.error.json`` says why a video was set aside.

The record is written (validated, atomically) before the video is moved, so a video in ``corrupted/``
always has its reason next to it; the move itself is the orchestrator's last step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vvctl.core.atomic import atomic_write_json
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


def _record_sha256(path: Path) -> str | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return str(document["video"]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _destination(corrupted_dir: Path, name: str, sha256: str) -> Path:
    """A free name in ``corrupted/`` whose ``.error.json`` is free too, or is an orphan of this same video.

    A record without its video is left by a run that died between the record and the move; it is
    reused for the same content and never overwritten for another.
    """
    destination = free_destination(corrupted_dir, name, sha256)
    number = 2
    while error_path_for(destination).exists() and _record_sha256(error_path_for(destination)) != sha256:
        stem, suffix = Path(name).stem, Path(name).suffix
        destination = free_destination(corrupted_dir, f"{stem}.{sha256[:8]}.{number}{suffix}", sha256)
        number += 1
    return destination


def write_error_record(
    corrupted_dir: Path,
    video: Path,
    *,
    sha256: str,
    size: int,
    reason: str,
    message: str,
    attempts: int,
    duplicate_of: str | None = None,
    clock: Clock = utcnow,
) -> QuarantineRecord:
    """Choose the video's name in ``corrupted/`` and write its validated ``.error.json`` there."""
    if reason not in REASONS:
        raise ValueError(f"unknown quarantine reason {reason!r}")
    destination = _destination(corrupted_dir, video.name, sha256)
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "vvctl.error",
        "video": {
            "name": video.name,
            "original_path": str(video),
            "quarantined_path": str(destination),
            "sha256": sha256,
            "size": size,
        },
        "reason": reason,
        "message": message,
        "attempts": attempts,
        "time": rfc3339(clock()),
    }
    if duplicate_of is not None:
        document["duplicate_of"] = duplicate_of
    validate(document, ERROR_SCHEMA)
    path = error_path_for(destination)
    atomic_write_json(path, document)
    return QuarantineRecord(destination=destination, error_path=path, document=document)
