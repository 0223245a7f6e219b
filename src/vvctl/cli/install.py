"""``vvctl install``: bootstrap, the schedule (crontab or systemd timers), the integrity manifest."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from vvctl.cli.console import copyable_table
from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.state import get_state
from vvctl.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from vvctl.ops.install.install import CheckReport, InstallReport

_STYLE = {
    "installed": "green",
    "updated": "yellow",
    "removed": "yellow",
    "unchanged": "dim",
    "absent": "dim",
}


def _install_human(console: Console, report: InstallReport) -> None:
    if report.dry_run and report.diff:
        sys.stdout.write(report.diff)
    table = copyable_table("what", "where", "change", "detail")
    for item in report.items:
        style = _STYLE.get(item.change.value, "cyan")
        table.add_row(item.what, item.where, f"[{style}]{item.change.value}[/]", item.detail)
    console.print(table)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    if report.todo:
        console.print("run these to finish:", markup=False)
        for line in report.todo:
            console.print(f"  {line}", markup=False)
    if report.dry_run:
        console.print("dry run: nothing was changed")
    elif not report.changed:
        console.print(f"{report.action}: unchanged")
    elif report.action == "install":
        console.print(
            f"installed: {report.scheduler.value} ({report.scope}, {report.target}); config {report.config}",
            markup=False,
        )
    else:
        console.print(f"uninstalled from {report.target}", markup=False)


def _check_human(console: Console, report: CheckReport) -> None:
    table = copyable_table(
        "check", "result", "detail", title=f"{report.scheduler.value} ({report.scope}, {report.target})"
    )
    for item in report.items:
        table.add_row(item.what, "[green]ok[/]" if item.ok else "[red]FAIL[/]", item.detail)
    console.print(table)
    for drift in report.integrity.drift:
        console.print(f"drift: {drift.describe()}", markup=False)
    jobs = copyable_table("job", "schedule", "last run", "status", "last success", "next due", title="scheduled jobs")
    for job in report.jobs:
        jobs.add_row(
            job.job, job.schedule, job.last_run or "never", job.last_status or "", job.last_success or "", job.next_due
        )
    console.print(jobs)
    if not report.ok and report.diff:
        console.print("installed vs. what install would write now:")
        sys.stdout.write(report.diff)
    console.print("install check passed" if report.ok else "[red]install check FAILED[/]")


def command(
    ctx: typer.Context,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="crontab|systemd",
            help="Run the jobs from cron (a crontab block) or systemd timers [default: as installed, else crontab].",
        ),
    ] = None,
    system: Annotated[
        bool | None,
        typer.Option(
            "--system/--user",
            help="System-wide (/etc/cron.d/vvctl, /etc/systemd/system; root) or the user's own crontab or units"
            " [default: as installed, else --user].",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print a unified diff of what would change; change nothing.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Confirm the schedule is in place and current, the scheduler runs, and nothing drifted."
        ),
    ] = False,
    uninstall: Annotated[
        bool, typer.Option("--uninstall", help="Remove exactly what install added (the config and data stay).")
    ] = False,
    storage_root: StorageRootOption = None,
    crontab_user: Annotated[
        str | None, typer.Option("--crontab-user", hidden=True, help="Another user's crontab (root only).")
    ] = None,
) -> None:
    """Make this machine a box that runs by itself: bootstrap (storage layout, config, key store, model),
    then the schedule of orchestrate, monitor, export-logs, cleanup and selftest (a block between
    '# BEGIN vvctl' and '# END vvctl' in the crontab, every other line left as it was, or systemd service
    and timer units), then the signed integrity manifest <storage_root>/state/vv-signature.json of the
    installed files, the config, the schedule and the model. Running it again reports 'unchanged'.

    --check also shows when each job last ran. Exit codes: 0 done (--check: everything in place);
    1 --check found a problem (missing or outdated schedule, no cron daemon, drifted files); 2 bad
    options; 3 bad config (such as a schedule that is not a cron expression); 6 storage problem;
    7 no crontab program (install cron or use --scheduler systemd).
    """
    from vvctl.ops.install.install import InstallClients, SchedulerKind
    from vvctl.ops.install.install import check as run_check
    from vvctl.ops.install.install import install as run_install
    from vvctl.ops.install.install import uninstall as run_uninstall

    state = get_state(ctx)
    if check and (uninstall or dry_run):
        raise UsageError("--check goes alone (not with --uninstall or --dry-run)")
    kind: SchedulerKind | None = None
    if scheduler is not None:
        try:
            kind = SchedulerKind(scheduler)
        except ValueError:
            raise UsageError(f"--scheduler must be crontab or systemd, not {scheduler!r}") from None
    clients = InstallClients(crontab_user=crontab_user)
    loaded = state.settings(require_file=False, storage_root=str(storage_root) if storage_root else None)
    if check:
        report = run_check(loaded, scheduler=kind, system=system, clients=clients)
        emit(state, report, "install-check", _check_human)
        if not report.ok:
            if state.quiet or state.json:
                for problem in report.problems:
                    print(f"vvctl: install check: {problem}", file=sys.stderr)
            raise typer.Exit(int(ExitCode.FINDINGS))
        return
    act = run_uninstall if uninstall else run_install
    result = act(loaded, scheduler=kind, system=system, dry_run=dry_run, clients=clients)
    emit(state, result, "install", _install_human)
