"""Plain JSON data from typed reports: dataclasses, enums, paths, datetimes, mappings and sequences.

Used by the CLI renderer (``--json``) and by library code that serves a report as JSON (the monitor's
``/status``), so both give the same document for the same report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from vvctl.core.names import display
from vvctl.core.timeutil import rfc3339

_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from a report: dataclasses, enums, paths, datetimes, mappings and sequences."""
    if value is None or type(value) in (str, int, float, bool):
        return value  # the common case first: reports with thousands of rows are mostly leaves
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_jsonable(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, Path):
        return display(str(value))  # a name that is not UTF-8 as \xNN text (vvctl.core.names)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


__all__ = ["to_jsonable"]
