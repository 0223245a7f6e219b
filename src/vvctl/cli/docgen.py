"""Generate ``docs/cli.md`` (every command's ``--help``) and ``completions/`` from the app itself.

``python -m vvctl.cli.docgen --write`` regenerates them; ``--check`` (and ``tests/cli/test_docs.py``)
fails when they are out of date, so every command stays documented.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import typer.main
from typer.testing import CliRunner

from vvctl.cli.app import app

SHELLS = {"bash": "vvctl.bash", "zsh": "_vvctl", "fish": "vvctl.fish"}
HELP_ENV = {"TERMINAL_WIDTH": "100", "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def _command_paths() -> Iterator[list[str]]:
    def walk(command: object, prefix: list[str]) -> Iterator[list[str]]:
        yield prefix
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            if not getattr(sub, "hidden", False):
                yield from walk(sub, [*prefix, name])

    yield from walk(typer.main.get_command(app), [])


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, env=HELP_ENV, prog_name="vvctl")
    if result.exit_code != 0:
        raise RuntimeError(f"vvctl {' '.join(args)} exited {result.exit_code}: {result.output}")
    return "\n".join(line.rstrip() for line in result.stdout.strip("\n").splitlines())


def cli_markdown() -> str:
    parts = [
        "# Command reference",
        "",
        "Generated from `--help` by `python -m vvctl.cli.docgen --write`; do not edit by hand.",
        "Exit codes: see [exit-codes.md](exit-codes.md).",
        "",
        "Global options (`--config`, `--json`, `-v/--verbose`, `-q/--quiet`) are accepted by every command,",
        "before the subcommand or after it: `vvctl --json keys list` and `vvctl keys list --json` are the same.",
        "They are shown in each command's options below.",
        "",
    ]
    for path in _command_paths():
        title = " ".join(["vvctl", *path])
        parts += [f"## `{title}`", "", "```text", _run([*path, "--help"]), "```", ""]
    return "\n".join(parts)


def completion_scripts() -> dict[str, str]:
    return {name: _run(["--show-completion", shell]) + "\n" for shell, name in SHELLS.items()}


def outputs(repo: Path) -> dict[Path, str]:
    files = {repo / "docs" / "cli.md": cli_markdown()}
    files.update({repo / "completions" / name: text for name, text in completion_scripts().items()})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the files (default: check them)")
    parser.add_argument("--repo", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(args.repo).items():
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path))
    if stale:
        print("out of date (run python -m vvctl.cli.docgen --write): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
