"""``vvctl report``: (re)build a day's index, HTML report and playlist; list its presence intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from vvctl.cli.console import copyable_table
from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.state import get_state

if TYPE_CHECKING:
    from vvctl.ops.report import DayReport


def _human(console: Console, report: DayReport) -> None:
    console.print(
        f"{report.date} ({report.timezone}): {report.videos} video(s) on {len(report.cameras)} camera(s)",
        markup=False,
    )
    if report.intervals:
        table = copyable_table("camera", "label", "from (UTC)", "to (UTC)", "peak", "video", "offset s")
        for interval in report.intervals:
            table.add_row(
                interval["camera"],
                interval["label"],
                interval["start_at"],
                interval["end_at"],
                str(interval["peak_count"]),
                str(interval["video"]),
                f"{float(interval['offset_s']):.1f}",
            )
        console.print(table)
    else:
        console.print("no presence interval", markup=False)
    console.print(f"index: {report.index}", markup=False, soft_wrap=True)
    console.print(f"report: {report.html}", markup=False, soft_wrap=True)
    fallback = " (fallback clip: nothing qualified)" if report.fallback_used else ""
    console.print(
        f"playlist: {report.playlist} ({report.playlist_entries} video(s){fallback})", markup=False, soft_wrap=True
    )


def command(
    ctx: typer.Context,
    date: Annotated[
        str | None,
        typer.Option("--date", metavar="YYYY-MM-DD", help="The day (in source_timezone) [default: today]."),
    ] = None,
    camera: Annotated[str | None, typer.Option("--camera", help="List only this camera's intervals.")] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="List only this label's intervals (e.g. person).")
    ] = None,
    storage_root: StorageRootOption = None,
) -> None:
    """(Re)build one day's outputs from its summaries, atomically: reports/DATE.json (the day index: every
    presence interval per camera and label, in UTC), reports/DATE.html (a self-contained page with a
    timeline strip, intervals and snapshots per camera) and playlists/DATE.m3u8. Then list the day's
    intervals, filtered by --camera and --label ("every interval with people on camera X today").

    Exit codes: 0 built; 2 a bad --date; 3 an unknown source_timezone; 6 storage root not set up or not writable.
    """
    from vvctl.ops.report import report as build

    state = get_state(ctx)
    settings = state.settings(storage_root=str(storage_root) if storage_root else None).settings
    emit(state, build(settings, date, camera=camera, label=label), "report", _human)
