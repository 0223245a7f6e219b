"""``vvctl selftest``: the daily self-test (pipeline on the sample clip, recent LogLines, integrity)."""

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
    from vvctl.ops.install.selftest import SelftestReport


def _human(console: Console, report: SelftestReport) -> None:
    table = copyable_table("step", "result", "seconds", "detail")
    for step in report.steps:
        style = "green" if step.result.value == "PASS" else "red"
        table.add_row(step.name, f"[{style}]{step.result.value}[/]", f"{step.seconds:.2f}", step.detail)
    console.print(table)
    since = f"LogLines checked since {report.since}" if report.since else "all LogLines checked (first self-test)"
    console.print(f"{since}; storage root {report.storage_root}", markup=False)
    verdict = "[green]selftest PASS[/]" if report.passed else "[red]selftest FAIL[/]"
    console.print(f"{verdict} in {report.seconds:.2f} s")


def command(
    ctx: typer.Context,
    storage_root: StorageRootOption = None,
) -> None:
    """Test the box end to end and say PASS or FAIL, with the time each step took: the whole pipeline on
    the bundled sample clip in a scratch storage root (with the box's model and inference settings; the
    box's data is never touched), the box's LogLines written since the last passing self-test (signature,
    form, chain), and the installed files against the signed integrity manifest. Runs as a job, so its
    run is recorded and signed like every job's and the monitor sees when it last passed.

    Exit codes: 0 PASS; 1 FAIL (a step failed; with --quiet the reason still goes to stderr);
    4 another selftest is running; 6 storage problem.
    """
    from vvctl.ops.install.selftest import selftest

    state = get_state(ctx)
    settings = state.settings(storage_root=str(storage_root) if storage_root else None).settings
    result = selftest(settings)
    emit(state, result.report, "selftest", _human)
    if not result.report.passed:
        if state.quiet or state.json:
            print(f"vvctl: {result.report.summary}", file=sys.stderr)
        raise typer.Exit(int(result.exit_code))
