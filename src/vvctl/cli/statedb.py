"""``vvctl state``: maintenance of the state database (``rebuild`` after it was lost)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console

from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.state import get_state

if TYPE_CHECKING:
    from vvctl.pipeline.rebuild import RebuildReport

app = typer.Typer(help="Maintain the state database: rebuild it after it was lost.", no_args_is_help=True)


def _human(console: Console, report: RebuildReport) -> None:
    videos = ", ".join(f"{n} {status}" for status, n in sorted(report.videos.items())) or "no video"
    heads = ", ".join(f"{log} #{seq}" for log, seq in sorted(report.chain_heads.items())) or "none"
    console.print(f"rebuilt {report.state_db} from {report.loglines} verified LogLines", markup=False)
    console.print(f"videos: {videos}; chain heads: {heads}", markup=False)
    console.print(f"recorded in {report.logline}", markup=False)


@app.command("rebuild")
def rebuild(ctx: typer.Context, storage_root: StorageRootOption = None) -> None:
    """Rebuild a lost state database from the verified LogLines and the files (refused while one exists).

    Exit codes: 0 rebuilt; 2 the database exists; 5 some LogLine does not verify (nothing is written);
    4 an orchestrate run is going; 6 storage problem."""
    from vvctl.pipeline.rebuild import rebuild_state

    state = get_state(ctx)
    settings = state.settings(storage_root=str(storage_root) if storage_root else None).settings
    emit(state, rebuild_state(settings), "state-rebuild", _human)
