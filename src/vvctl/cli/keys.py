"""``vvctl keys``: list, rotate, revoke and export the public half of the signing keys.

No command here ever shows a secret: the library hands out :class:`KeyInfo`, which has no secret field.
Rotating or revoking appends a signed LogLine to the ``jobs`` log, signed by the key active afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vvctl.cli.console import copyable_table
from vvctl.cli.render import emit
from vvctl.cli.state import get_state
from vvctl.core.keystore import KeyInfo
from vvctl.core.settings import Settings

if TYPE_CHECKING:
    from vvctl.ops.keys import KeyChange

app = typer.Typer(help="Manage the signing keys: list, rotate, revoke, export-public.", no_args_is_help=True)

KeyStoreOption = Annotated[
    Path | None, typer.Option("--key-store", metavar="FILE", help="Key store file (default: the configured key_store).")
]


@dataclass(frozen=True)
class KeyList:
    key_store: Path
    keys: tuple[KeyInfo, ...]


@dataclass(frozen=True)
class PublicExport:
    path: Path
    keys: tuple[KeyInfo, ...]
    skipped_hmac: tuple[str, ...]


def _settings(ctx: typer.Context, key_store: Path | None) -> Settings:
    flags: dict[str, Any] = {"key_store": str(key_store)} if key_store is not None else {}
    return get_state(ctx).settings(**flags).settings


def _key_table(keys: tuple[KeyInfo, ...]) -> Table:
    table = copyable_table("key id", "algorithm", "status", "created", "retired", "revoked", "public key")
    for key in keys:
        revoked = (key.revoked or "") + (f" ({key.revoked_reason})" if key.revoked_reason else "")
        table.add_row(
            key.key_id,
            key.algorithm.value,
            key.status.value,
            key.created,
            key.retired or "",
            revoked,
            key.public_key or "",
        )
    return table


@app.command("list")
def list_command(ctx: typer.Context, key_store: KeyStoreOption = None) -> None:
    """List the keys in the key store (ids, algorithms, status; never secrets)."""
    from vvctl.core.keystore import list_keys

    settings = _settings(ctx, key_store)
    report = KeyList(settings.key_store, list_keys(settings.key_store))

    def human(console: Console, r: KeyList) -> None:
        console.print(_key_table(r.keys))
        console.print(f"key store {r.key_store}: {len(r.keys)} keys")

    emit(get_state(ctx), report, "keys-list", human)


def _show_change(console: Console, report: KeyChange) -> None:
    if not report.changed:
        console.print(f"key {report.key.key_id} was already {report.key.status.value}; nothing changed")
        return
    console.print(f"{report.action}: key {report.key.key_id} is now {report.key.status.value}")
    if report.active is not None:
        console.print(f"new active key: {report.active.key_id} ({report.active.algorithm.value})")
    if report.logline is not None:
        console.print(f"recorded in {report.logline}")


@app.command("rotate")
def rotate_command(ctx: typer.Context, key_store: KeyStoreOption = None) -> None:
    """Retire the active key (what it signed stays valid) and make a new one, of the configured algorithm."""
    from vvctl.ops.keys import rotate

    report = rotate(_settings(ctx, key_store)).report
    emit(get_state(ctx), report, "keys-rotate", _show_change)


@app.command("revoke")
def revoke_command(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key to revoke (see 'vvctl keys list').", metavar="KEY_ID")],
    reason: Annotated[
        str | None, typer.Option("--reason", metavar="TEXT", help="Why (kept in the key store, max 500 chars).")
    ] = None,
    key_store: KeyStoreOption = None,
) -> None:
    """Revoke a key: every LogLine it signed verifies as INVALID (revoked_key). Revoking the active key
    also makes a new active key."""
    from vvctl.ops.keys import revoke

    report = revoke(_settings(ctx, key_store), key_id, reason).report
    emit(get_state(ctx), report, "keys-revoke", _show_change)


@app.command("export-public")
def export_public_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Where to write the public keys (JSON).")] = Path(
        "vvctl-public-keys.json"
    ),
    key_store: KeyStoreOption = None,
) -> None:
    """Write the Ed25519 public keys an auditor needs to verify LogLines offline (HMAC keys are secret)."""
    from vvctl.core.keystore import export_public_keys

    settings = _settings(ctx, key_store)
    export = export_public_keys(settings.key_store, out)
    report = PublicExport(export.path, export.keys, export.skipped_hmac)

    def human(console: Console, r: PublicExport) -> None:
        console.print(_key_table(r.keys))
        console.print(f"wrote {len(r.keys)} public keys to {r.path}")
        if r.skipped_hmac:
            console.print(f"left out {len(r.skipped_hmac)} HMAC keys (shared secrets): {', '.join(r.skipped_hmac)}")

    emit(get_state(ctx), report, "keys-export-public", human)
