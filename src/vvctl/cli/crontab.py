"""``vvctl crontab``: print the crontab block ``vvctl install`` puts in place, for this installation."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from vvctl.cli.render import emit
from vvctl.cli.state import get_state

if TYPE_CHECKING:
    from vvctl.ops.install.install import CrontabPreview


def _human(console: Console, preview: CrontabPreview) -> None:
    # Plain text on stdout, byte for byte what install writes: it may be piped into a file or 'crontab -'.
    sys.stdout.write(preview.block)


def command(
    ctx: typer.Context,
    system: Annotated[
        bool, typer.Option("--system", help="Lines for /etc/cron.d/vvctl (with the user field), as install --system.")
    ] = False,
) -> None:
    """Print the crontab block of this installation: orchestrate --once, monitor --once, export-logs,
    cleanup and selftest on their schedules (the 'schedules' setting), each with the absolute path of
    this vvctl, VV_CONFIG set to the config file, and its output appended to
    <storage_root>/logs/cron-<job>.log. 'vvctl install' installs exactly this block.
    """
    from vvctl.ops.install.install import crontab_block

    state = get_state(ctx)
    preview = crontab_block(state.settings(require_file=False), system=system)
    if not preview.config_exists:
        print(
            f"vvctl: WARNING: the config {preview.config} does not exist yet: 'vvctl install' creates it",
            file=sys.stderr,
        )
    emit(state, preview, "crontab", _human)
