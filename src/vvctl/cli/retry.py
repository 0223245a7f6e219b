"""``vvctl retry``: move quarantined videos back to input/ for a new analysis, recorded in a LogLine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.state import get_state

if TYPE_CHECKING:
    from vvctl.pipeline.retry import RetryReport


def _human(console: Console, report: RetryReport) -> None:
    for video in report.videos:
        console.print(f"re-queued {video.name} ({video.reason}) as input/{video.requeued_as.name}", markup=False)
    console.print(f"{len(report.videos)} video(s) re-queued; the next orchestrate run analyses them", markup=False)


def command(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="[NAME]...", help="Quarantined videos: their name in corrupted/ or as they arrived."),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Re-queue every quarantined video.")] = False,
    storage_root: StorageRootOption = None,
) -> None:
    """Give quarantined videos another analysis: each moves from corrupted/ back to input/ under the name it
    arrived with, its .error.json is removed, its attempts are reset and a LogLine records the retry.

    Exit codes: 0 done; 2 an unknown name, or neither NAME nor --all; 4 an orchestrate run is going (retry
    after it); 6 storage problem."""
    from vvctl.pipeline.retry import retry

    state = get_state(ctx)
    settings = state.settings(storage_root=str(storage_root) if storage_root else None).settings
    emit(state, retry(settings, names or [], every=every), "retry", _human)
