"""Key rotation and revocation as jobs: change the key store, then record the change as key events.

The key event goes to every log (:mod:`vvctl.core.keyevents`), signed by the key that is active after the
change, so each chain shows where every key stopped signing; the verifier reads it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vvctl.core.errors import UsageError
from vvctl.core.keyevents import ALWAYS, record_pending
from vvctl.core.keystore import KeyInfo, revoke_key, rotate_key
from vvctl.core.settings import Settings

MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class KeyChange:
    key_store: Path
    action: str
    key: KeyInfo
    changed: bool
    active: KeyInfo | None
    """The key that is active after the change, when the change made a new one."""
    logline: Path | None


def _record(settings: Settings) -> Path | None:
    """Record the key store's pending events in every log; the ``jobs`` LogLine of the last one."""
    recorded = record_pending(settings)
    return recorded[-1].paths.get(ALWAYS) if recorded else None


def rotate(settings: Settings) -> KeyChange:
    """Retire the active key (what it signed stays valid) and make a new one of ``signing_algorithm``."""
    rotation = rotate_key(settings.key_store, settings.signing_algorithm)
    logline = _record(settings)
    return KeyChange(settings.key_store, "rotated", rotation.retired or rotation.new, True, rotation.new, logline)


def revoke(settings: Settings, key_id: str, reason: str | None = None) -> KeyChange:
    """Revoke ``key_id``: what it signed verifies as invalid. Revoking the active key makes a new one."""
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise UsageError(f"--reason is longer than {MAX_REASON_CHARS} characters")
    revocation = revoke_key(settings.key_store, key_id, algorithm=settings.signing_algorithm, reason=reason)
    logline = _record(settings) if revocation.changed else None
    return KeyChange(
        settings.key_store, "revoked", revocation.revoked, revocation.changed, revocation.replacement, logline
    )


__all__ = ["MAX_REASON_CHARS", "KeyChange", "revoke", "rotate"]
