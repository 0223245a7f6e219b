"""``vvctl orchestrate``: analyse every new video in ``input/`` once, sign the record, archive the video."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vvctl.cli.console import make_console
from vvctl.cli.options import StorageRootOption
from vvctl.cli.render import emit
from vvctl.cli.signals import stop_on_signals
from vvctl.cli.state import get_state
from vvctl.core.errors import ExitCode, LockedError, UsageError
from vvctl.core.jobs import exit_code_for

if TYPE_CHECKING:
    from vvctl.pipeline.orchestrate import OrchestrateReport, ProgressEvent, VideoResult


def _result_line(result: VideoResult) -> str:
    detail = result.status or result.reason or ""
    if result.outcome.value == "done":
        speed = f"{result.frames_sampled / result.wall_s:.1f} frames/s" if result.wall_s > 0 else ""
        return f"{result.outcome.value:<11} {result.name}: {detail} ({result.frames_sampled} frames, {speed})"
    message = (result.message or "").removeprefix(f"{result.name}: ")
    reason = f" ({result.reason})" if result.reason else ""
    return f"{result.outcome.value:<11} {result.name}{reason}{': ' + message if message else ''}"


PROBLEMS = frozenset({"quarantined", "failed"})
"""Outcomes announced on stderr even with --quiet or --json."""


class _Live:
    """Turns library progress events into output: per-video lines, the GPU warning, and (on a terminal)
    rich progress bars for the current video and the whole pass with sampled frames/s and ETA."""

    def __init__(self, *, lines: bool, bars: bool, console: Console, warn: Callable[[str], None]) -> None:
        self.lines = lines
        self.console = console
        self.warn = warn
        self.progress: Progress | None = None
        self.overall: TaskID | None = None
        self.current: TaskID | None = None
        self.position = 0
        self.frames_done = 0
        self.started = time.monotonic()
        if bars:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self) -> _Live:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _print(self, text: str) -> None:
        (self.progress.console if self.progress is not None else self.console).print(text, markup=False, soft_wrap=True)

    def __call__(self, event: ProgressEvent) -> None:
        from vvctl.pipeline.orchestrate import EngineBuilding, ModelLoaded, VideoFinished, VideoProgress, VideoStarted

        if isinstance(event, EngineBuilding):
            if self.lines:
                self._print(f"note: {event.message}")
            return
        if isinstance(event, ModelLoaded):
            if event.model.warning is not None:
                self.warn(event.model.warning)
            return
        if isinstance(event, VideoFinished):
            if self.lines:
                self._print(_result_line(event.result))
            elif event.result.outcome.value in PROBLEMS:
                # --quiet/--json print no per-video lines, but a file set aside must still reach a person
                # (cron mails what lands on stderr).
                self.warn(" ".join(_result_line(event.result).split(maxsplit=1)))
            self.frames_done += event.result.frames_sampled
            if self.progress is not None and self.overall is not None:
                self.progress.advance(self.overall)
            return
        if self.progress is None:
            return
        if isinstance(event, VideoStarted):
            if self.overall is None:
                self.overall = self.progress.add_task("all videos", total=event.total, rate="")
            elif event.position <= self.position:  # a new --watch pass
                self.progress.reset(self.overall, total=event.total)
            self.position = event.position
            if self.current is not None:
                self.progress.remove_task(self.current)
            self.current = self.progress.add_task(
                f"{event.position}/{event.total} {event.name}", total=event.expected_samples, rate=""
            )
        elif isinstance(event, VideoProgress) and self.current is not None:
            rate = f"{event.frames_sampled / event.elapsed_s:.1f} frames/s" if event.elapsed_s > 0 else ""
            self.progress.update(self.current, completed=event.frames_sampled, rate=rate)
            if self.overall is not None:
                total = (self.frames_done + event.frames_sampled) / max(time.monotonic() - self.started, 1e-6)
                self.progress.update(self.overall, rate=f"{total:.1f} frames/s")


def _warn(message: str) -> None:
    print(f"vvctl: WARNING: {message}", file=sys.stderr, flush=True)


def _human(console: Console, report: OrchestrateReport) -> None:
    counts = ", ".join(f"{n} {outcome}" for outcome, n in report.counts.items() if n) or "no video to process"
    speed = ""
    if report.frames_sampled:
        speed = (
            f"; {report.frames_sampled} frames sampled at {report.sampled_fps:g} frames/s "
            f"({report.realtime_factor:g}x realtime)"
        )
    console.print(f"orchestrate {report.job_status}: {counts}{speed}", markup=False)
    console.print(f"{report.backlog} video file(s) left in input/ ({report.waiting} still settling)", markup=False)
    if report.model is not None and report.model.note is not None:
        console.print(f"note: {report.model.note}", markup=False)
    if report.skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(report.skipped.items()))
        console.print(f"skipped in input/: {reasons} (not analysed)", markup=False)
    for html_report in report.reports:
        console.print(f"report: {html_report}", markup=False, soft_wrap=True)
    if report.counts.get("quarantined"):
        console.print(f"quarantined videos are in {report.storage_root / 'corrupted'} with their .error.json")


def exit_code(report: OrchestrateReport) -> ExitCode:
    """The run's exit code (see the command help): findings only count in ``--once`` runs."""
    if report.mode.value == "watch":
        return ExitCode.OK
    if report.stopped:
        return ExitCode.INTERRUPTED
    return exit_code_for(report.outcome)


def command(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once/--watch", help="Process the backlog and exit (default), or keep watching input/.")
    ] = True,
    interval: Annotated[
        float | None,
        typer.Option("--interval", min=0.1, help="Seconds between two scans of input/ with --watch [default: 10]."),
    ] = None,
    reprocess: Annotated[
        bool, typer.Option("--reprocess", help="Analyse again done videos whose model or analysis settings changed.")
    ] = False,
    storage_root: StorageRootOption = None,
    settle: Annotated[
        float | None,
        typer.Option("--settle", min=0.0, help="Seconds a file's size and mtime must be stable (overrides settle_s)."),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            metavar="local|ray",
            help="Analyse in this process, or on a Ray cluster (overrides executor; docs/distributed.md).",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", metavar="HOST:PORT", help="Ray head to use with --executor ray (overrides ray_address)."
        ),
    ] = None,
) -> None:
    """Analyse every new video in input/ once: analytic JSON, summary JSON, signed LogLine, then move it
    to processed/. Bad files go to corrupted/ with <name>.error.json; the run goes on.

    --once (the default, for cron) processes the backlog and exits; --watch keeps polling input/ every
    --interval seconds until SIGTERM or SIGINT, which stop it cleanly (the video being analysed stays in
    input/ for the next run).

    Exit codes: 0 every video handled (done, duplicate) or nothing to do, and a clean --watch stop;
    1 a video was quarantined or an attempt failed in a --once run (someone should look at corrupted/);
    4 another orchestrate holds the lock (this one exits at once; silently with --quiet); 5 model checksum
    mismatch;
    6 storage problem such as a full disk (the run stops, nothing is lost; rerun when there is space);
    7 no usable inference provider; 130 a --once run stopped by SIGTERM/SIGINT before the backlog was done.
    A GPU provider that was requested but ended on CPU on a machine that has a GPU prints a warning on
    stderr (also in --json); on a machine without a GPU it is recorded and noted, not warned about.
    """
    from vvctl.pipeline.orchestrate import Mode, orchestrate

    state = get_state(ctx)
    if once and interval is not None:
        raise UsageError("--interval applies to --watch only")
    flags: dict[str, Any] = {
        "storage_root": str(storage_root) if storage_root else None,
        "settle_s": settle,
        "executor": executor,
        "ray_address": address,
    }
    settings = state.settings(**flags).settings
    show = not (state.json or state.quiet)
    bars = show and sys.stdout.isatty() and sys.stderr.isatty()
    stop = threading.Event()
    live = _Live(lines=show, bars=bars, console=make_console(stderr=bars), warn=_warn)
    try:
        with stop_on_signals(stop), live:
            report = orchestrate(
                settings,
                mode=Mode.ONCE if once else Mode.WATCH,
                interval_s=10.0 if interval is None else interval,
                reprocess=reprocess,
                stop=stop,
                on_progress=live,
            )
    except LockedError:
        if state.quiet and not state.json:
            # An overlapping cron run is normal operation, not news: exit 4 without a word.
            raise typer.Exit(int(ExitCode.LOCKED)) from None
        raise
    emit(state, report, "orchestrate", _human)
    code = exit_code(report)
    if code is not ExitCode.OK:
        raise typer.Exit(int(code))
