"""The one renderer: a typed report becomes a rich view for people or JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from vvctl.cli.console import make_console
from vvctl.cli.state import CliState
from vvctl.core.names import display
from vvctl.core.timeutil import rfc3339

JSON_SCHEMA_VERSION = 1

R = TypeVar("R")


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


def json_document(report: Any, kind: str) -> dict[str, Any]:
    body = to_jsonable(report)
    document: dict[str, Any] = {"schema_version": JSON_SCHEMA_VERSION, "kind": kind}
    if isinstance(body, dict):
        document.update(body)
    else:
        document["result"] = body
    return document


def emit(state: CliState, report: R, kind: str, human: Callable[[Console, R], None]) -> None:
    """Print ``report`` as JSON (``--json``) or through ``human`` (unless ``--quiet``)."""
    if state.json:
        # Indented for a person at a terminal; compact (and several times faster to encode, which matters
        # for reports with thousands of rows) when a script reads it.
        indent = 2 if sys.stdout.isatty() else None
        print(json.dumps(json_document(report, kind), indent=indent, ensure_ascii=False))
        return
    if state.quiet:
        return
    human(make_console(), report)
