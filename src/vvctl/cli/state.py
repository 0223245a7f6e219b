"""Global options shared by every subcommand (``ctx.obj``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from vvctl.core.settings import LoadedSettings, load_settings


@dataclass
class CliState:
    config: Path | None = None
    json: bool = False
    verbose: bool = False
    quiet: bool = False

    def settings(self, *, require_file: bool = True, **flags: Any) -> LoadedSettings:
        """Effective settings: these flags over ``VV_*`` over the config file over defaults.

        A config file named by ``--config`` or ``VV_CONFIG`` must exist (exit 3 otherwise), except for a
        command that creates it (``require_file=False``: bootstrap).
        """
        return load_settings(self.config, flags=flags, require_file=require_file)


def get_state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj
