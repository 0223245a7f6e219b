"""Key events on the chain: every change of the signing keys becomes a LogLine in every log.

A key store change (:func:`vvctl.core.keystore.rotate_key`, ``revoke_key``, ``ensure_keystore``) queues
its events in the store's ``pending_events`` in the same atomic write. :func:`record_pending` then
appends one LogLine per event to every log (each signed by the key active after the change) and drops
the events from the store. A run killed in between leaves them queued; the next call records them (a log
that already got one gets it twice, which changes no verdict).

Why every log: the verifier judges a record against the key events *of its own chain*, so a record
signed by a key after that key's ``retired`` event in the same log is invalid, whatever the auditor's key
export says. An event kept in one log only could not order records of the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vvctl.core.keystore import KeyEvent, KeyStore, drop_pending, load_keystore
from vvctl.core.layout import StorageLayout
from vvctl.core.logline import LogLineDraft, LogLineWriter, existing_logs
from vvctl.core.settings import Settings
from vvctl.core.timeutil import Clock, utcnow

ALWAYS = "jobs"
"""The log that gets every key event even before it exists (a fresh box has no log yet)."""

_DID = {
    "created": "created the signing key",
    "retired": "rotated the signing key",
    "revoked": "revoked a signing key",
}
_SLUG = {"created": "keys-create", "retired": "keys-rotate", "revoked": "keys-revoke"}


@dataclass(frozen=True)
class RecordedEvent:
    event: KeyEvent
    paths: dict[str, Path]
    """The LogLine written for the event, by log."""


def _summary(store: KeyStore, event: Mapping[str, str]) -> str:
    key_id = event["key_id"]
    info = store.find(key_id)
    new = event.get("new_key_id")
    new_info = store.find(new) if new else None
    new_text = f"; new active key {new} ({new_info.info.algorithm.value})" if new and new_info else ""
    if event["event"] == "created":
        algorithm = f" ({info.info.algorithm.value})" if info else ""
        return f"key {key_id}{algorithm} is the active signing key of box {store.box}"
    if event["event"] == "retired":
        when = f" on {info.info.retired}" if info and info.info.retired and not new else ""
        return f"retired key {key_id}{when}{new_text}"
    reason = info.info.revoked_reason if info else None
    return f"revoked key {key_id}" + (f" ({reason})" if reason else "") + new_text


def record_pending(settings: Settings, *, clock: Clock = utcnow) -> list[RecordedEvent]:
    """Write the key store's pending key events to every log (and ``jobs``); drop them from the store."""
    store = load_keystore(settings.key_store)
    if not store.pending:
        return []
    writer = LogLineWriter(settings, clock=clock)
    logs = sorted({*existing_logs(StorageLayout(settings.storage_root)), ALWAYS})
    recorded: list[RecordedEvent] = []
    for event in store.pending:
        key_id = event["key_id"]
        draft = LogLineDraft(
            who="vvctl keys",
            did=_DID[event["event"]],
            this=_summary(store, event),
            status="ok",
            # The key the record is about: the new one for a rotation, the one concerned otherwise.
            source={"type": "key", "id": event.get("new_key_id", key_id) if event["event"] == "retired" else key_id},
            key_event=event,
        )
        paths = {log: writer.append(log, draft, slug=_SLUG[event["event"]]).path for log in logs}
        recorded.append(RecordedEvent(event, paths))
    drop_pending(settings.key_store, [r.event for r in recorded])
    return recorded


__all__ = ["ALWAYS", "RecordedEvent", "record_pending"]
