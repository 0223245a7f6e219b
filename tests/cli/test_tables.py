"""Tables keep what an operator copies: folded on a terminal, never cut; piped output never wrapped."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from vvctl.cli.console import PIPE_WIDTH, copyable_table, make_console

HASH = "9f2c" * 16


def test_a_narrow_terminal_folds_a_hash_and_a_path_instead_of_cutting_them() -> None:
    out = io.StringIO()
    console = Console(file=out, width=50, force_terminal=True, color_system=None)
    table = copyable_table("log", "head hash", "path")
    table.add_row("videos", HASH, "processed/cam1/2026-12-01/a-very-long-recorder-file-name-143000.mp4")
    console.print(table)
    text = out.getvalue()
    assert "…" not in text
    lines = text.splitlines()
    body = next(n for n, line in enumerate(lines) if line.startswith(("┡", "├")))
    rows = [line.split("│") for line in lines[body + 1 :] if line.count("│") == 4]
    column = {n: "".join(row[n].strip() for row in rows) for n in (2, 3)}
    assert column[2] == HASH  # folded over several lines, every character kept
    assert column[3] == "processed/cam1/2026-12-01/a-very-long-recorder-file-name-143000.mp4"


def test_a_console_that_is_not_a_terminal_never_wraps(capsys: object) -> None:
    console = make_console()  # pytest's captured stdout is not a terminal
    assert console.width == PIPE_WIDTH and console.soft_wrap
    line = "x" * 500
    console.print(line)
    table = copyable_table("hash", "path")
    table.add_row(HASH, "/srv/" + "long-folder/" * 20 + "clip.mp4")
    console.print(table)
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert line in out.splitlines()
    assert any(HASH in row and "clip.mp4" in row for row in out.splitlines())


def test_status_piped_through_a_real_process_keeps_long_lines_whole(tmp_path: Path) -> None:
    root = tmp_path / ("deep-" * 30) / "box"
    config = tmp_path / "c.toml"
    config.write_text(f'storage_root = "{root}"\n')
    vvctl = [sys.executable, "-m", "vvctl", "--config", str(config)]
    subprocess.run([*vvctl, "bootstrap"], check=True, capture_output=True)
    done = subprocess.run([*vvctl, "status"], check=True, capture_output=True, text=True)
    assert f"storage root {root}" in done.stdout.splitlines()
