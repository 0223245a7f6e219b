"""What the executor tests (fake and Ray) compare between a local run and a distributed one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.pipeline.conftest import Box, load

TIMING_KEYS = ("created_at", "timings")


def drop_in_order(box: Box, files: list[tuple[Path, str]]) -> None:
    """Copy the clips into input/ with mtimes one second apart, so discovery order is the list's."""
    base = 1_700_000_000
    for index, (source, name) in enumerate(files):
        target = box.layout.input / name
        shutil.copyfile(source, target)
        os.utime(target, (base + index, base + index))


def comparable_analytic(path: Path, root: Path) -> dict[str, Any]:
    """An analytic document without what legitimately differs between two runs: timings, the model's load
    time, and the storage root in the path."""
    document = load(path)
    for key in TIMING_KEYS:
        document.pop(key)
    document["model"].pop("load_s")
    source = Path(document["source"]["path"])
    document["source"]["path"] = str(source.relative_to(root) if source.is_absolute() else source)
    return document


def story(box: Box, log: str = "videos") -> list[tuple[str, str, str, str]]:
    """The ``videos`` LogLines in chain order as (did, status, this, source path relative to the root)."""
    out = []
    for path in sorted((box.root / "loglines" / log).glob("*.logline.json")):
        record = load(path)
        source = record["source"].get("path", "")
        relative = str(Path(source).relative_to(box.root)) if source.startswith(str(box.root)) else source
        out.append((record["did"], record["status"], record["this"].replace(str(box.root), "<root>"), relative))
    return out


def outputs(box: Box) -> dict[str, dict[str, Any]]:
    return {p.name: comparable_analytic(p, box.root) for p in sorted(box.layout.analytic.glob("*.analytic.json"))}


def summaries(box: Box) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(box.layout.summaries.glob("*.summary.json")):
        document = load(path)
        document.pop("created_at", None)
        found[path.name] = document
    return found


def same_results(local: Box, remote: Box, *, check: Callable[[Box], None]) -> None:
    """Identical analytic documents (apart from timings), summaries, and LogLine story; both chains verify."""
    assert outputs(remote) == outputs(local)
    assert summaries(remote) == summaries(local)
    assert story(remote) == story(local)
    check(local)
    check(remote)
