"""``vvctl bootstrap``: set up the storage layout, config, key store and model (idempotent)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vvctl.cli.console import copyable_table
from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.state import get_state
from vvctl.ops.bootstrap import BootstrapReport, Outcome

_STYLE = {
    Outcome.CREATED: "green",
    Outcome.REPLACED: "yellow",
    Outcome.PRESENT: "dim",
    Outcome.WOULD_CREATE: "cyan",
    Outcome.WOULD_REPLACE: "cyan",
    Outcome.MISSING: "red",
}


def _human(console: Console, report: BootstrapReport) -> None:
    table = copyable_table("what", "path", "outcome", "detail")
    for item in report.items:
        outcome = f"[{_STYLE[item.outcome]}]{item.outcome.value}[/]"
        table.add_row(item.kind, str(item.path), outcome, item.detail)
    console.print(table)
    if report.dry_run:
        console.print("dry run: nothing was changed")
    elif report.changed:
        console.print(f"bootstrap done: storage root {report.storage_root}, config {report.config_path}")
    else:
        console.print("everything was already in place; nothing changed")


def command(
    ctx: typer.Context,
    storage_root: StorageRootOption = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Provision this ONNX model instead of the bundled one.")
    ] = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="Expected SHA-256 of --model.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")] = False,
) -> None:
    """Create the storage layout, a commented default config, the key store and the verified model."""
    from vvctl.ops.bootstrap import bootstrap

    state = get_state(ctx)
    loaded = state.settings(require_file=False, storage_root=str(storage_root) if storage_root else None)
    report = bootstrap(loaded, model_source=model, model_sha256=sha256, dry_run=dry_run)
    emit(state, report, "bootstrap", _human)
