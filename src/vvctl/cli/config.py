"""``vvctl config show|path``: the effective settings and the file they come from."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from vvctl.cli.console import copyable_table
from vvctl.cli.render import emit
from vvctl.cli.state import get_state
from vvctl.core.settings import SettingsReport, describe, resolve_config_path

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


def _show_human(console: Console, report: SettingsReport) -> None:
    state = "" if report.config_exists else " (absent: defaults apply)"
    console.print(f"config file: {report.config_path}{state}", markup=False)
    table = copyable_table("setting", "value", "source")
    for entry in report.settings:
        value = entry.value if isinstance(entry.value, str) else json.dumps(entry.value)
        table.add_row(entry.key, value, entry.source.value)
    console.print(table)


@app.command("show")
def show(ctx: typer.Context) -> None:
    """Print every setting, its effective value and where it came from (secrets redacted)."""
    state = get_state(ctx)
    emit(state, describe(state.settings()), "config", _show_human)


@app.command("path")
def path(ctx: typer.Context) -> None:
    """Print the config file in use (whether or not it exists yet)."""
    import os

    state = get_state(ctx)
    config_path = resolve_config_path(state.config, os.environ)
    report = {"config_path": str(config_path), "exists": config_path.exists()}
    emit(state, report, "config-path", lambda console, r: console.print(str(r["config_path"]), markup=False))
