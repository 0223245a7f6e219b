"""``vvctl checkpoint``: write the signed head of a log for an auditor to keep."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vvctl.cli.render import emit
from vvctl.cli.state import get_state


@dataclass(frozen=True)
class CheckpointHead:
    log: str
    seq: int
    hash: str


@dataclass(frozen=True)
class CheckpointReport:
    path: Path
    box: str
    heads: tuple[CheckpointHead, ...]
    key_id: str
    algorithm: str


def _human(console: Console, report: CheckpointReport) -> None:
    console.print(
        f"checkpoint of box {report.box} written to {report.path}, signed with {report.algorithm} key {report.key_id}:"
    )
    for head in report.heads:
        console.print(f"  log {head.log}: head seq {head.seq}, hash {head.hash}", soft_wrap=True)
    console.print(f"later: vvctl verify-logline --checkpoint {report.path} <loglines dir>")


def command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Where to write the checkpoint (JSON).")],
    log: Annotated[
        list[str] | None,
        typer.Option("--log", metavar="LOG", help="Only this log's head (repeatable; default: every log)."),
    ] = None,
) -> None:
    """Write a signed checkpoint (seq and hash of the newest LogLine of every log) that detects a cut-off tail."""
    from vvctl.core.logline import export_checkpoint

    state = get_state(ctx)
    document = export_checkpoint(state.settings().settings, list(log or []), out)
    details = document["signature_details"]
    heads = tuple(CheckpointHead(h["log"], h["seq"], h["hash"]) for h in document["heads"])
    report = CheckpointReport(out, document["box"], heads, details["key_id"], details["algorithm"])
    emit(state, report, "checkpoint", _human)
