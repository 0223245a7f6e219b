"""``vvctl cleanup``: delete old files by the retention policy and keep the free-space floor."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from vvctl.cli.console import copyable_table, make_console
from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.state import get_state
from vvctl.core.errors import ExitCode

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from vvctl.ops.cleanup import CleanupReport

BAR_AFTER_S = 1.0
"""The progress bar appears only when deleting takes longer than this."""


class _Bar:
    """A rich progress bar on stderr, started only once the run has taken :data:`BAR_AFTER_S`."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or (self.progress is None and time.monotonic() - self.started < BAR_AFTER_S):
            return
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.progress = Progress(
                "deleting",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=make_console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("files", total=total)
        if self.task is not None:
            self.progress.update(self.task, completed=done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _human(console: Console, report: CleanupReport) -> None:
    from vvctl.ops.cleanup import format_bytes

    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True)

    files = "files to delete" if report.dry_run else "files deleted"
    table = copyable_table("directory", "age limit", files, "bytes", "dirs removed", "kept", "failed")
    for d in report.directories:
        kept = ", ".join(f"{n} {reason}" for reason, n in sorted(d.kept.items())) or ""
        table.add_row(
            d.name,
            f"{d.max_age_days:g} days",
            str(d.files) + (f" ({d.by_floor} for the floor)" if d.by_floor else ""),
            format_bytes(d.bytes),
            str(d.dirs_removed),
            kept,
            d.error or (str(d.failed) if d.failed else ""),
        )
    console.print(table)
    after = "estimated after" if report.dry_run else "after"
    line = f"free space: {format_bytes(report.free_before)} before, {format_bytes(report.free_after)} {after}"
    if report.floor:
        line += f"; floor {format_bytes(report.floor)}: {'met' if report.floor_met else 'NOT met'}"
    say(line)
    for failure in report.failures:
        say(f"could not delete {failure.path}: {failure.reason}")
    if report.failed > len(report.failures):
        say(f"... {report.failed - len(report.failures)} more failures (see --log-file)")
    for skipped in report.skipped:
        say(f"skipped {skipped.path}: {skipped.reason}")
    if report.skipped_count > len(report.skipped):
        say(f"... {report.skipped_count - len(report.skipped)} more paths skipped")
    if report.interrupted:
        say("stopped before the end; run it again to finish")
    if report.logline is not None:
        say(f"recorded in {report.logline}")


def command(
    ctx: typer.Context,
    days: Annotated[
        float | None,
        typer.Option("--days", min=0, metavar="N", help="Delete files older than N days (overrides retention_days)."),
    ] = None,
    dirs: Annotated[
        list[str] | None,
        typer.Option(
            "--dirs",
            metavar="DIR",
            help="A storage directory name (processed) or a path; repeatable, or comma-separated (logs,processed).",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", metavar="GLOB", help="Never delete what matches (a name or relative path); repeatable."
        ),
    ] = None,
    min_free_space: Annotated[
        str | None,
        typer.Option(
            "--min-free-space",
            metavar="SIZE",
            help="Free-space floor: 20GB, 500MiB or 10% (overrides min_free_space_gb; 0 disables).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted; delete nothing.")] = False,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", metavar="PATH", help="Append one JSON line per file to PATH.")
    ] = None,
    allow_outside: Annotated[
        bool, typer.Option("--allow-outside", help="Allow --dirs paths outside the storage root.")
    ] = False,
    storage_root: StorageRootOption = None,
) -> None:
    """Delete files older than their directory's retention_days and, when free space under the storage
    root is below the floor (min_free_space_gb or --min-free-space), the oldest other files until it is
    met. Never deletes state/, models/, loglines/, a video in input/, a video that is not done, anything
    reached through a symlink, or anything outside the directories given. Directories left empty are
    removed, never the storage layout's own.

    Exit codes: 0 done; 1 a file could not be deleted or the free-space floor was not reached;
    2 bad options (a directory that is never cleaned, a path outside the storage root without
    --allow-outside); 4 another cleanup holds the lock; 6 storage problem.
    """
    from vvctl.core.jobs import exit_code_for
    from vvctl.ops.cleanup import cleanup, parse_free_space, preview

    state = get_state(ctx)
    floor = parse_free_space(min_free_space) if min_free_space is not None else None
    flags: dict[str, Any] = {"storage_root": str(storage_root) if storage_root else None}
    settings = state.settings(**flags).settings
    options: dict[str, Any] = {
        "dirs": tuple(dirs or ()),
        "days": days,
        "excludes": tuple(exclude or ()),
        "floor": floor,
        "allow_outside": allow_outside,
        "log_file": log_file,
    }
    if dry_run:
        report = preview(settings, **options)
    else:
        bar = _Bar(not (state.json or state.quiet) and sys.stderr.isatty())
        progress: Callable[[int, int], None] = bar
        try:
            report = cleanup(settings, on_progress=progress, **options).report
        finally:
            bar.close()
    emit(state, report, "cleanup", _human)
    code = ExitCode.INTERRUPTED if report.interrupted else exit_code_for(report.outcome)
    if code is not ExitCode.OK:
        raise typer.Exit(int(code))
