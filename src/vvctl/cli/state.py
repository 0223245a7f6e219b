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

    def settings(self, **flags: Any) -> LoadedSettings:
        """Effective settings: these flags over ``VV_*`` over the config file over defaults."""
        return load_settings(self.config, flags=flags)


def get_state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj
