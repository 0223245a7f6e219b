"""Key rotation and revocation as jobs: change the key store, then record the change as a signed LogLine.

The record goes to the ``jobs`` log and is signed by the key that is active after the change, so the
audit trail shows when every key stopped signing and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vvctl.core.errors import UsageError
from vvctl.core.keystore import KeyInfo, revoke_key, rotate_key
from vvctl.core.logline import LogLineDraft, LogLineWriter
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


def _record(settings: Settings, did: str, this: str, key_id: str, slug: str) -> Path:
    draft = LogLineDraft(who="vvctl keys", did=did, this=this, status="ok", source={"type": "key", "id": key_id})
    return LogLineWriter(settings).append("jobs", draft, slug=slug).path


def rotate(settings: Settings) -> KeyChange:
    """Retire the active key (what it signed stays valid) and make a new one of ``signing_algorithm``."""
    rotation = rotate_key(settings.key_store, settings.signing_algorithm)
    retired = rotation.retired
    this = f"retired key {retired.key_id}" if retired else "no key was active"
    logline = _record(
        settings,
        "rotated the signing key",
        f"{this}; new active key {rotation.new.key_id} ({rotation.new.algorithm.value})",
        rotation.new.key_id,
        "keys-rotate",
    )
    return KeyChange(settings.key_store, "rotated", retired or rotation.new, True, rotation.new, logline)


def revoke(settings: Settings, key_id: str, reason: str | None = None) -> KeyChange:
    """Revoke ``key_id``: what it signed verifies as invalid. Revoking the active key makes a new one."""
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise UsageError(f"--reason is longer than {MAX_REASON_CHARS} characters")
    revocation = revoke_key(settings.key_store, key_id, algorithm=settings.signing_algorithm, reason=reason)
    logline = None
    if revocation.changed:
        this = f"revoked key {key_id}" + (f" ({reason})" if reason else "")
        if revocation.replacement is not None:
            this += f"; new active key {revocation.replacement.key_id}"
        logline = _record(settings, "revoked a signing key", this, key_id, "keys-revoke")
    return KeyChange(
        settings.key_store, "revoked", revocation.revoked, revocation.changed, revocation.replacement, logline
    )


__all__ = ["MAX_REASON_CHARS", "KeyChange", "revoke", "rotate"]
