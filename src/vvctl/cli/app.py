"""The ``vvctl`` root: global options, subcommand registration and the one error path."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from vvctl import __version__
from vvctl.cli import (
    bootstrap,
    checkpoint,
    cleanup,
    config,
    crontab,
    demo,
    doctor,
    export_logs,
    install,
    keys,
    monitor,
    orchestrate,
    report,
    retry,
    selftest,
    statedb,
    status,
    verify_logline,
)
from vvctl.cli.options import add_global_options
from vvctl.cli.render import JSON_SCHEMA_VERSION
from vvctl.cli.state import get_state
from vvctl.core.errors import ExitCode, VVError


class VVGroup(TyperGroup):
    """Catches library errors once for every subcommand: one line on stderr, the documented exit code.

    Built with every subcommand already in it, it also gives the root and every command below it the
    global options (one rule: before or after the subcommand; see :mod:`vvctl.cli.options`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_global_options(self)

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
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """vvctl: analyse recorded videos once, sign every record, keep the box healthy.

    The options --config, --json, --verbose and --quiet go before the subcommand or after it.
    """
    get_state(ctx)  # the global options given here have already been recorded in it


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
app.command("retry")(retry.command)
app.command("report")(report.command)
app.add_typer(statedb.app, name="state")
app.command("cleanup")(cleanup.command)
app.command("monitor")(monitor.command)
app.command("install")(install.command)
app.command("crontab")(crontab.command)
app.command("selftest")(selftest.command)


def main() -> None:
    app(prog_name="vvctl")
