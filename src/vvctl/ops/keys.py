"""Key rotation and revocation as jobs: change the key store, then record the change as key events.

Both run through the job runner (:mod:`vvctl.core.jobs`): the ``keys`` lock, a job-run row and the run's
own LogLine; a full disk while recording is exit 6, and the events stay queued in the key store for the
next ``keys`` command or ``bootstrap`` to record.

The key event goes to every log (:mod:`vvctl.core.keyevents`), signed by the key that is active after the
change, so each chain shows where every key stopped signing; the verifier reads it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vvctl.core.errors import UsageError
from vvctl.core.jobs import JobContext, JobOutcome, JobRunResult, JobSpec, run_job
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

    @property
    def outcome(self) -> JobOutcome:
        return JobOutcome.OK

    @property
    def summary(self) -> str:
        if not self.changed:
            return f"key {self.key.key_id} was already {self.action}"
        active = f"; active key {self.active.key_id}" if self.active is not None else ""
        return f"{self.action} key {self.key.key_id}{active}"


SPEC = JobSpec("keys", "changed the signing keys")


def _record(settings: Settings) -> Path | None:
    """Record the key store's pending events in every log; the ``jobs`` LogLine of the last one."""
    recorded = record_pending(settings)
    return recorded[-1].paths.get(ALWAYS) if recorded else None


def rotate(settings: Settings) -> JobRunResult[KeyChange]:
    """Retire the active key (what it signed stays valid) and make a new one of ``signing_algorithm``."""

    def body(ctx: JobContext) -> KeyChange:
        rotation = rotate_key(settings.key_store, settings.signing_algorithm)
        logline = _record(settings)
        return KeyChange(settings.key_store, "rotated", rotation.retired or rotation.new, True, rotation.new, logline)

    return run_job(settings, SPEC, body)


def revoke(settings: Settings, key_id: str, reason: str | None = None) -> JobRunResult[KeyChange]:
    """Revoke ``key_id``: what it signed verifies as invalid. Revoking the active key makes a new one."""
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise UsageError(f"--reason is longer than {MAX_REASON_CHARS} characters")

    def body(ctx: JobContext) -> KeyChange:
        revocation = revoke_key(settings.key_store, key_id, algorithm=settings.signing_algorithm, reason=reason)
        logline = _record(settings) if revocation.changed else None
        return KeyChange(
            settings.key_store, "revoked", revocation.revoked, revocation.changed, revocation.replacement, logline
        )

    return run_job(settings, SPEC, body)


__all__ = ["MAX_REASON_CHARS", "SPEC", "KeyChange", "revoke", "rotate"]
