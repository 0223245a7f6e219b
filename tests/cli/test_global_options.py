"""One rule for the global options: --config, --json, --verbose/-v and --quiet/-q are accepted before the
subcommand and after it, for every group and command of the app (walked from the app itself, so a new
command is covered without touching this file)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from vvctl.cli.app import app
from vvctl.cli.options import GLOBAL_OPTION_NAMES

GLOBAL = ("--config", "--json", "--verbose", "-v", "--quiet", "-q")
# Commands that never read the config file get arguments that make them stop early with an error of
# their own, instead of doing their real work (demo would run the whole pipeline).
STOP_EARLY: dict[tuple[str, ...], list[str]] = {("demo",): ["--storage-root", "{file}"]}


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


COMMANDS = list(walk(typer.main.get_command(app)))
LEAVES = [path for path, command in COMMANDS if not hasattr(command, "commands")]


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path in LEAVES}
    assert {"bootstrap", "demo", "orchestrate", "status", "verify-logline", "checkpoint"} <= names
    assert {"config show", "config path", "keys list", "keys rotate", "keys revoke", "keys export-public"} <= names
    assert set(GLOBAL) == GLOBAL_OPTION_NAMES


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=lambda v: " ".join(v) or "vvctl" if isinstance(v, tuple) else ""
)
def test_every_group_and_command_declares_the_global_options_once(path: tuple[str, ...], command: Any) -> None:
    names = [name for param in command.params for name in getattr(param, "opts", [])]
    for option in GLOBAL:
        assert names.count(option) == 1, f"vvctl {' '.join(path)}: {option} declared {names.count(option)} times"


def _required_args(command: Any, tmp_path: Path) -> list[str]:
    """Placeholder values for the required parameters, so that the command gets past parsing."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        value = str(tmp_path / f"absent-{param.name}")
        args += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    return args


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_global_options_work_after_every_command(path: tuple[str, ...], tmp_path: Path) -> None:
    """The same run with the global options before and after the subcommand: same exit code, same JSON.

    The config file is not valid TOML, so --config given after the command is seen to take effect too:
    every command that reads it stops with exit 3 naming that file.
    """
    command = dict(COMMANDS)[path]
    config = tmp_path / "broken.toml"
    config.write_text("storage_root = [\n", encoding="utf-8")
    (tmp_path / "a-file").write_text("not a directory\n", encoding="utf-8")
    args = [a.format(file=tmp_path / "a-file") for a in STOP_EARLY.get(path, [])] + _required_args(command, tmp_path)
    options = ["--config", str(config), "--json"]
    runner = CliRunner()
    before = runner.invoke(app, [*options, *path, *args], catch_exceptions=False)
    after = runner.invoke(app, [*path, *args, *options], catch_exceptions=False)
    assert after.exit_code == before.exit_code, (before.output, after.output)
    assert json.loads(after.stdout) == json.loads(before.stdout)
    document = json.loads(after.stdout)
    assert document["schema_version"] == 1
    if document["kind"] == "error" and document["error"]["exit_code"] == 3:
        assert str(config) in document["error"]["message"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_after_the_command(tmp_path: Path, where: str) -> None:
    config = ["--config", str(tmp_path / "vvctl.toml")]
    args = ["--quiet", *config, "config", "path"] if where == "before" else ["config", "path", "-q", *config]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout == ""
    loud = CliRunner().invoke(app, ["config", "path", *config], catch_exceptions=False)
    assert loud.stdout.strip() == str(tmp_path / "vvctl.toml")


def test_verbose_after_the_command_shows_the_traceback(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("storage_root = [\n", encoding="utf-8")
    quiet = CliRunner().invoke(app, ["status", "--config", str(config)], catch_exceptions=False)
    verbose = CliRunner().invoke(app, ["status", "--config", str(config), "-v"], catch_exceptions=False)
    assert quiet.exit_code == verbose.exit_code == 3
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in verbose.stderr


def test_a_command_that_redeclares_a_global_option_is_refused() -> None:
    """The rule cannot be broken quietly: a command with its own --json would shadow the shared one."""
    from vvctl.cli.options import add_global_options

    clashing = typer.Typer()

    @clashing.command()
    def clash(json_output: bool = typer.Option(False, "--json")) -> None:
        """Declares --json itself."""

    with pytest.raises(RuntimeError, match="declares global option"):
        add_global_options(typer.main.get_command(clashing))
