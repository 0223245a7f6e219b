"""``vvctl export-logs``: archive logs and LogLines to a signed tar.gz, or check one with ``--verify``."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TimeRemainingColumn, TransferSpeedColumn

from vvctl.cli.console import copyable_table, make_console
from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.state import CliState, get_state
from vvctl.core.errors import UsageError

if TYPE_CHECKING:
    from vvctl.ops.export import ExportProgress, ExportReport, ExportVerifyReport

BAR_FROM_BYTES = 64 << 20
"""A progress bar is shown (on a terminal) only for exports at least this big: smaller ones take a moment."""


class _Bar:
    """A transient rich progress bar on stderr, started by the first progress event of a long export."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __call__(self, event: ExportProgress) -> None:
        if not self.enabled or event.total < BAR_FROM_BYTES:
            return
        if self.progress is None:
            self.progress = Progress(
                "exporting",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=make_console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("export", total=event.total)
        assert self.task is not None
        self.progress.update(self.task, completed=event.done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _human_export(console: Console, report: ExportReport) -> None:
    console.print(report.summary, markup=False, soft_wrap=True)
    if report.archive is not None:
        console.print(f"  archive:  {report.archive}", markup=False, soft_wrap=True)
        console.print(f"  manifest: {report.manifest}", markup=False, soft_wrap=True)
    for span in report.loglines:
        console.print(f"  log {span.log}: {span.count} LogLine(s), seq {span.first_seq}-{span.last_seq}", markup=False)
    for skipped in report.skipped:
        console.print(f"  skipped {skipped.path}: {skipped.why}", markup=False, soft_wrap=True)
    for stem in report.kept_exports:
        console.print(f"  kept {stem} past retention: it anchors a LogLine chain on this box", markup=False)
    for warning in report.warnings:
        console.print(f"  warning: {warning}", markup=False, soft_wrap=True)


def _human_verify(console: Console, report: ExportVerifyReport) -> None:
    signed = f", signed with key {report.key_id}" if report.key_id else ""
    console.print(
        f"{report.archive}: {report.members_checked} member(s) read, {report.members_listed} listed in "
        f"{report.manifest.name}{signed}",
        markup=False,
        soft_wrap=True,
    )
    if report.findings:
        table = copyable_table("reason", "member", "detail")
        for finding in report.findings:
            table.add_row(finding.reason.value, finding.member or "", finding.detail)
        console.print(table)
        console.print(f"[red]{len(report.findings)} finding(s): the export is NOT intact[/]")
    else:
        console.print("[green]the export is intact: every member matches the signed manifest[/]")


def _parse_date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise UsageError(f"--date {text!r} is not a date YYYY-MM-DD") from None


def command(
    ctx: typer.Context,
    on_date: Annotated[
        str | None,
        typer.Option("--date", metavar="YYYY-MM-DD", help="Export the files last modified on this UTC day."),
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Export every log file and LogLine present.")] = False,
    keep_days: Annotated[
        int | None,
        typer.Option(
            "--keep-days",
            min=1,
            metavar="N",
            help="Remove exports older than N days (overrides retention_days.exports).",
        ),
    ] = None,
    prune_loglines: Annotated[
        bool,
        typer.Option(
            "--prune-loglines",
            help="Then remove from loglines/ the LogLines held by an export that verifies (never a log's newest).",
        ),
    ] = False,
    verify: Annotated[
        Path | None,
        typer.Option("--verify", metavar="ARCHIVE", help="Check an export (archive or manifest) instead of exporting."),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option("--manifest", metavar="FILE", help="With --verify: the manifest (default: next to the archive)."),
    ] = None,
    key_store: Annotated[
        Path | None,
        typer.Option("--key-store", metavar="FILE", help="With --verify: key store to check the manifest with."),
    ] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option("--public-key", metavar="FILE", help="With --verify: exported Ed25519 public keys; repeatable."),
    ] = None,
    storage_root: StorageRootOption = None,
) -> None:
    """Archive logs/ and LogLines to exports/vv_logs_YYYYMMDD[-N].tar.gz with a signed manifest.

    By default what is new since the last export; --date one UTC day; --all everything. The archive is
    plain tar.gz (GNU tar extracts it, sha256sum of each file matches the manifest) and the same files
    always give the same bytes. --verify ARCHIVE recomputes an export and names every altered, missing or
    extra member and a bad or unknown signature.

    Exit codes: 0 exported (or the export verifies); 1 findings (--verify found differences, or the export
    ran with warnings); 2 bad arguments; 4 another export-logs is running; 6 storage problem such as a
    full disk (no partial archive is left and nothing is deleted).
    """
    state = get_state(ctx)
    if verify is not None:
        _verify(state, verify, manifest, key_store, list(public_key or []), storage_root)
        return
    if manifest is not None or key_store is not None or public_key:
        raise UsageError("--manifest, --key-store and --public-key go with --verify")
    if on_date is not None and everything:
        raise UsageError("give --date or --all, not both")
    day = _parse_date(on_date)
    from vvctl.ops.export import export_logs

    flags: dict[str, Any] = {"storage_root": str(storage_root) if storage_root else None}
    settings = state.settings(**flags).settings
    bar = _Bar(not (state.json or state.quiet) and sys.stderr.isatty())
    try:
        result = export_logs(
            settings, day=day, everything=everything, keep_days=keep_days, prune=prune_loglines, on_progress=bar
        )
    finally:
        bar.close()
    emit(state, result.report, "export-logs", _human_export)
    if result.exit_code:
        raise typer.Exit(int(result.exit_code))


def _verify(
    state: CliState,
    archive: Path,
    manifest: Path | None,
    key_store: Path | None,
    public_keys: list[Path],
    storage_root: Path | None,
) -> None:
    from vvctl.core.keystore import load_verification_keys
    from vvctl.ops.export import verify_export
    from vvctl.ops.export.verify import resolve_export_paths

    resolve_export_paths(archive, manifest)  # a usage error before any key store is looked for
    if key_store is None and not public_keys:
        flags: dict[str, Any] = {"storage_root": str(storage_root) if storage_root else None}
        key_store = state.settings(**flags).settings.key_store
    keys = load_verification_keys(key_store, public_keys)
    report = verify_export(archive, keys, manifest=manifest)
    emit(state, report, "export-logs-verify", _human_verify)
    if not report.ok:
        raise typer.Exit(1)
