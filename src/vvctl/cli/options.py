"""Options several subcommands share, defined once so their names and help stay the same everywhere.

The global options (``--config``, ``--json``, ``--verbose``, ``--quiet``) follow one rule: they are
accepted before the subcommand (``vvctl --json status``) and after it, among its own options
(``vvctl status --json``, ``vvctl keys list --json``). :func:`add_global_options` attaches them to the
root and to every group and command below it when the app is built, so a new command gets them
without declaring anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main

from vvctl.cli.state import get_state

StorageRootOption = Annotated[
    Path | None, typer.Option("--storage-root", help="Storage root (overrides config and VV_STORAGE_ROOT).")
]

# A given option only ever turns something on or names a file: an absent one (None, False) leaves
# what the other position set, so `vvctl --json status` stays JSON.


def _config(ctx: typer.Context, value: Path | None) -> None:
    if value is not None:
        get_state(ctx).config = value


def _json(ctx: typer.Context, value: bool) -> None:
    if value:
        get_state(ctx).json = True


def _verbose(ctx: typer.Context, value: bool) -> None:
    if value:
        get_state(ctx).verbose = True


def _quiet(ctx: typer.Context, value: bool) -> None:
    if value:
        get_state(ctx).quiet = True


def _global_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            expose_value=False,
            callback=_config,
            help="Config file (default: VV_CONFIG, then the platform config dir).",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", expose_value=False, callback=_json, help="Machine-readable JSON on stdout.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", expose_value=False, callback=_verbose, help="Tracebacks and debug output."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", expose_value=False, callback=_quiet, help="Only errors.")
    ] = False,
) -> None:
    """The global options, declared once; never run, only read by :func:`global_options`."""


def global_options() -> list[Any]:
    """The global options as the parameters of a built command (fresh objects on every call)."""
    prototype = typer.Typer(add_completion=False)
    prototype.command()(_global_options)
    params: list[Any] = typer.main.get_command(prototype).params
    return params


GLOBAL_OPTION_NAMES = frozenset(name for option in global_options() for name in option.opts)


def add_global_options(command: Any) -> None:
    """Attach the global options to ``command`` (a built group or command) and to everything below it."""
    taken = {name for param in command.params for name in getattr(param, "opts", [])}
    clash = taken & GLOBAL_OPTION_NAMES
    if clash:
        raise RuntimeError(f"command {command.name!r} declares global option(s) {sorted(clash)} itself")
    command.params.extend(global_options())
    for sub in getattr(command, "commands", {}).values():
        add_global_options(sub)
