"""``vvctl demo``: bootstrap, analyse the bundled sample clip, verify its LogLines, in a scratch root."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from vvctl.cli.render import emit
from vvctl.cli.state import get_state

if TYPE_CHECKING:  # the demo pulls in OpenCV and ONNX Runtime: import it only when it runs
    from vvctl.ops.demo import DemoReport


def _human(console: Console, report: DemoReport) -> None:
    video = report.video
    table = Table("step", "result", "seconds", show_header=True)
    table.add_row("bootstrap", f"storage root {report.storage_root}", f"{report.bootstrap_s:.2f}")
    provider = report.provider or "-"
    table.add_row(
        "orchestrate",
        f"{video.name}: {video.outcome.value}, {video.frames_sampled} frames sampled on {provider}",
        f"{report.orchestrate_s:.2f}",
    )
    verdict = "all valid" if report.loglines_valid == report.loglines_checked else "INVALID ones found"
    checked = f"{report.loglines_valid}/{report.loglines_checked} LogLines {verdict}"
    table.add_row("verify-logline", checked, f"{report.verify_s:.2f}")
    console.print(table)
    if report.fallback_reason:
        console.print(f"note: inference fell back to {provider}: {report.fallback_reason}")
    if video.text:
        console.print(f"summary: {video.text}")
    for label, path in (("analytic", video.analytic), ("summary", video.summary), ("LogLine", video.logline)):
        if path is not None:
            console.print(f"{label}: {path}")
    console.print(f"config: {report.config_path}")
    console.print("demo passed" if report.ok else "[red]demo FAILED[/]")


def command(
    ctx: typer.Context,
    storage_root: Annotated[
        Path | None,
        typer.Option(
            "--storage-root",
            help="Run in this directory (new, empty or an earlier demo's); default: a new temporary directory.",
        ),
    ] = None,
) -> None:
    """Run the whole pipeline once on the bundled sample clip and verify the signed records.

    Uses its own config and storage root (printed at the end, kept for you to look at); it never reads
    or changes the box's real config. Exit code 0 when the clip was analysed and every LogLine verified,
    1 otherwise.
    """
    from vvctl.ops.demo import run_demo

    state = get_state(ctx)
    report = run_demo(storage_root)
    emit(state, report, "demo", _human)
    if not report.ok:
        raise typer.Exit(1)
