"""``vvctl monitor``: check the box, the pipeline and its containers; heal, alert once, export metrics."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from vvctl.cli.console import copyable_table
from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.signals import stop_on_signals
from vvctl.cli.state import get_state
from vvctl.core.errors import ExitCode, UsageError
from vvctl.core.timeutil import rfc3339

if TYPE_CHECKING:
    from vvctl.ops.monitor.report import MonitorReport

_STYLE = {"OK": "green", "WARN": "yellow", "CRITICAL": "bold red"}


def _human(console: Console, report: MonitorReport) -> None:
    if report.watcher_pid is not None:
        console.print(
            f"a 'vvctl monitor --watch' (pid {report.watcher_pid}) holds the monitor lock: its latest results,"
            f" as of {rfc3339(report.checked_at)}",
            markup=False,
        )
    table = copyable_table(
        "check", "state", "value", "threshold", "since", title=f"monitor: {report.summary}", title_justify="left"
    )
    for row in report.checks:
        table.add_row(
            row.check,
            f"[{_STYLE[row.state.value]}]{row.state.value}[/]",
            row.value,
            row.threshold,
            rfc3339(row.since.replace(microsecond=0)),
        )
    console.print(table)
    for delivery in report.deliveries:
        outcome = "sent" if delivery.delivered else f"NOT delivered ({delivery.error}); retried next run"
        console.print(
            f"alert {delivery.event} {delivery.check} {delivery.state.value} to {delivery.target}: {outcome}",
            markup=False,
        )
    for line in report.recorded:
        console.print(f"recorded: {line}", markup=False)


def command(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once/--watch", help="One pass of every check and exit (default), or keep checking.")
    ] = True,
    interval: Annotated[
        float | None,
        typer.Option("--interval", min=1.0, help="Seconds between two passes with --watch [default: 60]."),
    ] = None,
    serve: Annotated[
        str | None,
        typer.Option(
            "--serve",
            metavar="HOST:PORT",
            help="With --watch: serve /metrics and /status on HOST:PORT (127.0.0.1:9810).",
        ),
    ] = None,
    storage_root: StorageRootOption = None,
) -> None:
    """Check the box, the pipeline and its Docker containers; restart unhealthy containers within a budget;
    alert people once per change (Apprise alert_urls, alert_command); write Prometheus metrics.

    Checks: free space under storage_root, the oldest video waiting in input/, videos quarantined into
    corrupted/, each scheduled job's last success against its cron schedule (dead-man), the LogLines written
    since the last pass, GPU inference that fell back to the CPU, the installed files against the signed
    integrity manifest of 'vvctl install', the Docker engine and every monitored container (names in
    'containers', label vvctl.monitor=true, 'compose_project').

    --once (the default, for cron every minute) runs one pass; --watch runs a pass every --interval
    seconds until SIGTERM or SIGINT and may serve /metrics and /status with --serve. While a --watch runs,
    --once shows the watcher's latest results instead of checking again (see docs/monitor.md).

    Exit codes (--once): 0 every check OK; 1 a check is WARN; 9 a check is CRITICAL; 3 bad config (such as
    a schedule that is not a cron expression); 4 another --once holds the lock; 6 storage root not usable.
    A --watch stopped by a signal exits 0.
    """
    from vvctl.ops.monitor import monitor_once, monitor_watch
    from vvctl.ops.monitor.metrics import parse_address

    state = get_state(ctx)
    if once and interval is not None:
        raise UsageError("--interval applies to --watch only")
    if once and serve is not None:
        raise UsageError("--serve applies to --watch only")
    address = parse_address(serve) if serve is not None else None
    settings = state.settings(storage_root=str(storage_root) if storage_root else None).settings
    if once:
        report = monitor_once(settings)
    else:
        stop = threading.Event()
        show = not (state.json or state.quiet)

        def served(where: tuple[str, int]) -> None:
            if show:
                print(f"serving http://{where[0]}:{where[1]}/metrics and /status", file=sys.stderr, flush=True)

        def passed(report: MonitorReport) -> None:
            if show:
                print(f"{rfc3339(report.checked_at)} {report.summary}", file=sys.stderr, flush=True)

        with stop_on_signals(stop):
            report = monitor_watch(
                settings,
                interval_s=60.0 if interval is None else interval,
                stop=stop,
                serve=address,
                on_serving=served,
                on_pass=passed,
            )
    emit(state, report, "monitor", _human)
    if report.exit_code is not ExitCode.OK:
        raise typer.Exit(int(report.exit_code))
