"""The one renderer: a typed report becomes a rich view for people or JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console

from vvctl.cli.console import make_console
from vvctl.cli.state import CliState
from vvctl.core.jsondata import to_jsonable

JSON_SCHEMA_VERSION = 1

R = TypeVar("R")


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
