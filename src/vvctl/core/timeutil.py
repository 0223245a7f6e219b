"""RFC 3339 UTC timestamps and an injectable clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-11-25T10:00:00.123456Z``: always UTC, always ``Z``; microseconds only when non-zero."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give a timezone-aware moment")
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def parse_rfc3339(text: str) -> datetime:
    """Parse what :func:`rfc3339` writes (and any RFC 3339 timestamp with an offset)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without timezone: {text!r}")
    return moment.astimezone(UTC)


def now_rfc3339(clock: Clock = utcnow) -> str:
    return rfc3339(clock())


def monotonic() -> float:
    return time.monotonic()
