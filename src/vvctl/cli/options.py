"""Options several subcommands share, defined once so their names and help stay the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StorageRootOption = Annotated[
    Path | None, typer.Option("--storage-root", help="Storage root (overrides config and VV_STORAGE_ROOT).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Same as the global --json: print the report as JSON.")]
