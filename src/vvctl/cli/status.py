"""``vvctl status``: backlog, done, failed, quarantined, processing, last run of each job, LogLine heads."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from vvctl.cli.console import copyable_table
from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.state import get_state

if TYPE_CHECKING:
    from vvctl.pipeline.status import StatusReport, VideoIssue


def _issues(console: Console, title: str, issues: list[VideoIssue]) -> None:
    if not issues:
        return
    table = copyable_table("video", "attempts", "reason", "since", "detail", title=title, title_justify="left")
    for issue in issues:
        table.add_row(issue.name, str(issue.attempts), issue.reason or "", issue.since or "", issue.error or "")
    console.print(table)


def _human(console: Console, report: StatusReport) -> None:
    backlog = report.backlog
    oldest = "" if backlog.oldest_age_s is None else f", oldest {backlog.oldest_age_s:.0f} s old"
    console.print(f"storage root {report.storage_root}", markup=False)
    console.print(
        f"backlog: {backlog.total} video file(s) in input/ "
        f"({backlog.ready} ready, {backlog.settling} settling{oldest})",
        markup=False,
    )
    videos = report.videos
    console.print(
        f"videos: {videos['done']} done, {videos['quarantined']} quarantined, {videos['failed']} failed, "
        f"{videos['processing']} processing, {videos['pending']} pending; "
        f"{report.processed_files} file(s) in processed/, {report.quarantined_files} in corrupted/",
        markup=False,
    )
    _issues(console, "processing", report.processing)
    _issues(console, "failed attempts (retried by the next run)", report.failed)
    _issues(console, "quarantined", report.quarantined)
    runs = copyable_table(
        "job",
        "run",
        "status",
        "started",
        "finished",
        "last success",
        "summary",
        title="last runs",
        title_justify="left",
    )
    for run in report.last_runs:
        success = report.last_successes.get(run.job)
        runs.add_row(
            run.job,
            str(run.id),
            run.status.value,
            run.started_at,
            run.finished_at or "",
            (success.finished_at or "") if success else "never",
            run.summary or "",
        )
    console.print(runs if report.last_runs else "last runs: no job has run yet")
    heads = copyable_table("log", "seq", "head hash", "updated", title="LogLine chain heads", title_justify="left")
    for head in report.chain_heads:
        heads.add_row(head.log, str(head.seq), head.hash, head.updated_at)
    console.print(heads if report.chain_heads else "LogLine chain heads: no LogLine yet")
    if report.skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(report.skipped.items()))
        console.print(f"skipped in input/: {reasons} (not analysed; see docs/orchestrate.md)", markup=False)
    if report.disk is not None and report.disk.message is not None:
        console.print(f"disk: FULL: {report.disk.message}", markup=False)


def command(
    ctx: typer.Context,
    storage_root: StorageRootOption = None,
) -> None:
    """Show the backlog in input/ (settling files included), done, failed, quarantined and processing
    videos, the last run of each job and the head of each LogLine chain. Reads the state database
    read-only. A full disk is reported (and warned about on stderr). Exit code 0; 6 when the storage root
    is not set up or the state database is missing or unreadable."""
    from vvctl.pipeline.status import collect_status

    state = get_state(ctx)
    settings = state.settings(storage_root=str(storage_root) if storage_root else None).settings
    report = collect_status(settings)
    if report.disk is not None and report.disk.message is not None:
        print(f"vvctl: WARNING: {report.disk.message}", file=sys.stderr, flush=True)
    emit(state, report, "status", _human)
