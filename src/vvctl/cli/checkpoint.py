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
class CheckpointReport:
    path: Path
    log: str
    seq: int
    hash: str
    key_id: str
    algorithm: str


def _human(console: Console, report: CheckpointReport) -> None:
    console.print(
        f"checkpoint of log {report.log} written to {report.path}: head seq {report.seq}, hash {report.hash}, "
        f"signed with {report.algorithm} key {report.key_id}"
    )
    console.print(f"later: vvctl verify-logline --checkpoint {report.path} <loglines dir>")


def command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Where to write the checkpoint (JSON).")],
    log: Annotated[str, typer.Option("--log", metavar="LOG", help="The log whose head to sign.")] = "videos",
) -> None:
    """Write a signed checkpoint (seq and hash of the newest LogLine) that detects a cut-off tail later."""
    from vvctl.core.logline import check_log_name, export_checkpoint

    state = get_state(ctx)
    document = export_checkpoint(state.settings().settings, check_log_name(log), out)
    details = document["signature_details"]
    report = CheckpointReport(
        out, document["log"], document["seq"], document["hash"], details["key_id"], details["algorithm"]
    )
    emit(state, report, "checkpoint", _human)
