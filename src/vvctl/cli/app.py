"""The ``vvctl`` root: global options, subcommand registration and the one error path."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from vvctl import __version__
from vvctl.cli import (
    bootstrap,
    checkpoint,
    config,
    demo,
    doctor,
    export_logs,
    keys,
    orchestrate,
    status,
    verify_logline,
)
from vvctl.cli.render import JSON_SCHEMA_VERSION
from vvctl.cli.state import CliState, get_state
from vvctl.core.errors import ExitCode, VVError


class VVGroup(TyperGroup):
    """Catches library errors once for every subcommand: one line on stderr, the documented exit code."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise
        except VVError as exc:
            fail(ctx, exc.exit_code, exc.message, type(exc).__name__)
        except KeyboardInterrupt:
            fail(ctx, ExitCode.INTERRUPTED, "interrupted", "Interrupted")
        except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into exit 70
            fail(
                ctx,
                ExitCode.INTERNAL,
                f"internal error ({type(exc).__name__}); run again with --verbose for the traceback",
                type(exc).__name__,
            )


def fail(ctx: typer.Context, code: ExitCode, message: str, error_type: str) -> None:
    state = get_state(ctx)
    if state.verbose and sys.exc_info()[0] is not None:
        traceback.print_exc(file=sys.stderr)
    # Plain print: one line that scripts can grep, never wrapped or styled.
    print(f"vvctl: error: {message}", file=sys.stderr)
    if state.json:
        import json

        error = {"type": error_type, "exit_code": int(code), "message": message}
        print(json.dumps({"schema_version": JSON_SCHEMA_VERSION, "kind": "error", "error": error}, indent=2))
    raise typer.Exit(int(code))


app = typer.Typer(
    name="vvctl",
    cls=VVGroup,
    help="Operations toolkit for edge video-AI boxes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Locals in tracebacks would print key material; keep them off even if pretty output is enabled.
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"vvctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config_path: Annotated[
        Path | None,
        typer.Option("--config", help="Config file (default: VV_CONFIG, then the platform config dir)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Tracebacks and debug output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """vvctl: analyse recorded videos once, sign every record, keep the box healthy."""
    ctx.obj = CliState(config=config_path, json=json_output, verbose=verbose, quiet=quiet)


app.command("bootstrap")(bootstrap.command)
app.add_typer(config.app, name="config")
app.command("demo")(demo.command)
app.command("orchestrate")(orchestrate.command)
app.command("status")(status.command)
app.command("doctor")(doctor.command)
app.command("verify-logline")(verify_logline.command)
app.add_typer(keys.app, name="keys")
app.command("checkpoint")(checkpoint.command)
app.command("export-logs")(export_logs.command)


def main() -> None:
    app(prog_name="vvctl")
