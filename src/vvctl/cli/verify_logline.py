"""``vvctl verify-logline``: a verdict per LogLine file, then the chain of every log."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vvctl.cli.console import copyable_table
from vvctl.cli.render import emit
from vvctl.cli.state import get_state
from vvctl.core.errors import UsageError
from vvctl.core.verify import Verdict, VerifyReport

# Above this many files people see only the invalid ones (and the counts) unless they ask for --all.
LIST_ALL_UP_TO = 50


def _common_directory(paths: list[str]) -> str:
    """The directory all ``paths`` lie under (so the table can show short paths), or "" when none."""
    try:
        common = os.path.commonpath(paths)
    except ValueError:  # absolute and relative paths mixed
        return ""
    return common if len(paths) > 1 or common != paths[0] else str(Path(common).parent)


def _human(console: Console, report: VerifyReport, *, list_all: bool) -> None:
    shown = (
        report.results
        if list_all or len(report.results) <= LIST_ALL_UP_TO
        else [r for r in report.results if r.verdict is Verdict.INVALID]
    )
    if shown:
        base = _common_directory([r.path for r in shown])
        if base:
            console.print(f"under {base}:", soft_wrap=True)
        table = copyable_table("path", "log", "seq", "verdict", "reason", "detail")
        for result in shown:
            verdict = "[green]VALID[/]" if result.valid else "[red]INVALID[/]"
            seq = "" if result.seq is None else str(result.seq)
            reason = result.reason.value if result.reason else ""
            table.add_row(
                os.path.relpath(result.path, base) if base else result.path,
                result.log or "",
                seq,
                verdict,
                reason,
                result.detail,
            )
        console.print(table)
    for summary in report.logs.values():
        span = f"seq {summary.first_seq}-{summary.last_seq}" if summary.first_seq is not None else "no LogLines"
        state = "[green]intact[/]" if summary.intact else "[red]NOT intact[/]"
        box = f" of box {summary.box}" if summary.box else ""
        line = f"log {summary.log}{box}: {summary.records} LogLines ({span}), {summary.invalid} invalid, chain {state}"
        if summary.head_hash:
            line += f"; head {summary.last_seq}:{summary.head_hash}"
        console.print(line, soft_wrap=True)  # the head must stay copyable as one LOG:SEQ:HASH line
        if summary.anchor is not None:
            console.print(
                f"  starts after seq {summary.anchor.seq}, vouched for by export manifest {summary.anchor.manifest}",
                soft_wrap=True,
            )
        for problem in summary.problems:
            console.print(f"  [red]{problem}[/]")
        if summary.legacy:
            console.print(
                f"  note: {summary.legacy} LogLines have no box id (written before box ids): see "
                "'Older chains' in docs/loglines.md"
            )
    for finding in report.problems:
        console.print(f"[red]INVALID ({finding.reason.value})[/]: {finding.detail}", soft_wrap=True)
    hidden = len(report.results) - len(shown)
    note = f" ({hidden} valid not listed; --all lists them)" if hidden else ""
    outcome = "[green]all valid[/]" if report.ok else "[red]INVALID LogLines found[/]"
    console.print(
        f"{len(report.results)} LogLines checked: {report.valid} valid, {report.invalid} invalid{note}: {outcome}"
    )


def command(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(help="LogLine files or directories (searched recursively).", metavar="PATH")
    ],
    key_store: Annotated[
        Path | None,
        typer.Option(
            "--key-store",
            metavar="FILE",
            help="Key store to verify with (default: the configured one, unless --public-key).",
        ),
    ] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            metavar="FILE",
            help="Exported Ed25519 public keys ('vvctl keys export-public'); repeatable.",
        ),
    ] = None,
    expect_head: Annotated[
        list[str] | None,
        typer.Option(
            "--expect-head",
            metavar="LOG:SEQ:HASH",
            help="Expected head LOG:SEQ:HASH (or SEQ:HASH when there is one log); detects a cut-off tail. Repeatable.",
        ),
    ] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint", help="Signed checkpoint ('vvctl checkpoint') giving the expected head. Repeatable."
        ),
    ] = None,
    box: Annotated[
        str | None,
        typer.Option(
            "--box",
            metavar="BOX_ID",
            help="The box the LogLines must come from (default: a checkpoint's box, or the one box of the keys).",
        ),
    ] = None,
    anchor: Annotated[
        list[Path] | None,
        typer.Option(
            "--anchor",
            metavar="MANIFEST",
            help="Export manifest (or a directory of them) vouching for where a log starts after its older "
            "LogLines were exported and removed. Repeatable. Default: the box's exports/ when no key option is given.",
        ),
    ] = None,
    list_all: Annotated[
        bool, typer.Option("--all", help=f"List every file, not only invalid ones, above {LIST_ALL_UP_TO} files.")
    ] = False,
    records_only: Annotated[
        bool,
        typer.Option(
            "--records-only",
            help="Check the records alone: skip comparing the files a record vouches for (analytic, summary, "
            "snapshots) with the storage root.",
        ),
    ] = False,
    outputs_root: Annotated[
        Path | None,
        typer.Option(
            "--outputs-root",
            metavar="DIR",
            help="Storage root holding the files the records vouch for (default: the one the LogLines lie in).",
        ),
    ] = None,
) -> None:
    """Verify LogLines: signature, schema, key, canonical bytes and chain (no gap, reorder, fork or cut tail),
    and the files a video's record vouches for (output_altered, output_missing) unless --records-only.

    Exit 0 when every LogLine is valid and every chain intact, 1 when not (no LogLine found included),
    2 for bad arguments.
    """
    from vvctl.core.export_manifest import ChainAnchors, load_anchors
    from vvctl.core.keystore import load_verification_keys
    from vvctl.core.verify import check_paths, resolve_expectations, verify_paths

    state = get_state(ctx)
    check_paths(paths)  # a usage error first, before any key store is looked for
    public_keys = list(public_key or [])
    anchors: ChainAnchors | Callable[[], ChainAnchors] | None = None
    exports: Path | None = None
    if key_store is None and not public_keys:
        settings = state.settings().settings
        key_store = settings.key_store
        exports = settings.storage_root / "exports"
    keys = load_verification_keys(key_store, public_keys)
    expected = resolve_expectations(list(expect_head or []), list(checkpoint or []), keys, box=box)
    if anchor:
        anchors = load_anchors(anchor, keys)
    elif exports is not None and exports.is_dir():
        found = exports
        # On the box: the exports' manifests, read only if a log starts after seq 1; untrusted ones are skipped.
        anchors = lambda: load_anchors([found], keys, strict=False)  # noqa: E731
    if outputs_root is not None and not outputs_root.is_dir():
        raise UsageError(f"--outputs-root {outputs_root} is not a directory")
    report = verify_paths(
        paths,
        keys,
        expect_heads=expected.heads,
        expect_box=expected.box,
        anchors=anchors,
        outputs=not records_only,
        outputs_root=outputs_root,
    )
    emit(state, report, "verify-logline", lambda console, r: _human(console, r, list_all=list_all))
    if not report.ok:
        raise typer.Exit(1)
