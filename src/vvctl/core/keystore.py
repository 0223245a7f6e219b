"""The key store: one JSON file (mode 0600) with every signing key vvctl ever used.

Format (``$defs/key_store`` in ``schemas/contract.signature.json``)::

    {"schema_version": 1, "kind": "vvctl-key-store", "box": "b-<16 hex>",
     "keys": [{"key_id": "k-1a2b3c4d", "algorithm": "hmac-sha256" | "ed25519",
               "status": "active" | "retired" | "revoked", "created": "...Z",
               "retired": "...Z", "revoked": "...Z", "revoked_reason": "...",
               "secret": "<32 bytes hex>", "public_key": "<32 bytes hex, ed25519 only>"}],
     "pending_events": [{"event": "retired", "key_id": "...", "new_key_id": "..."}]}

``box`` is the box's identity, made with the store (or added to a store older than box ids, which
*binds* it: its retired and revoked keys get key events). Exactly one key is active. Rotation retires it
(what it signed before its retirement record stays valid) and adds a new active key; revocation marks a
key so that everything it signed verifies as invalid ("revoked_key"). A retired or revoked Ed25519 key
keeps only its public key: rotation destroys its private key, so nobody can sign with it again. HMAC keys
keep their secret, since verifying needs it.

Every change queues key events (``pending_events``) in the same atomic write;
:mod:`vvctl.core.keyevents` records them in every log and then drops them, so a change interrupted
between the two is completed by the next key command or bootstrap.

Permissions policy: on POSIX a key store that grants any permission to group or others is refused
(:class:`IntegrityError`, exit 5) rather than used, because its HMAC keys let anyone who can read them forge
LogLines. vvctl writes it with mode 0600. Secrets never appear in a result, a message or an error:
results carry :class:`KeyInfo`, which has no secret field.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from vvctl.core.atomic import atomic_write_bytes, dumps_json
from vvctl.core.errors import InputError, IntegrityError, StorageError, UsageError
from vvctl.core.locks import exclusive_lock
from vvctl.core.signing import (
    Algorithm,
    KeyStatus,
    Signer,
    VerificationKeys,
    VerifyingKey,
    contract_problem,
    ed25519_public_key,
    ed25519_verifying_key,
    generate_secret,
    hmac_verifying_key,
    make_signer,
    parse_algorithm,
)
from vvctl.core.timeutil import Clock, rfc3339, utcnow

SCHEMA_VERSION = 1
KEY_STORE_KIND = "vvctl-key-store"
PUBLIC_KEYS_KIND = "vvctl-public-keys"
KEY_ID_PREFIX = "k-"
BOX_PREFIX = "b-"
KEY_STORE_MODE = 0o600
MAX_KEY_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: everything except its secret."""

    key_id: str
    algorithm: Algorithm
    status: KeyStatus
    created: str
    retired: str | None = None
    revoked: str | None = None
    revoked_reason: str | None = None
    public_key: str | None = None
    """Ed25519 only: the raw public key, hex. Public by definition."""


@dataclass(frozen=True)
class StoredKey:
    info: KeyInfo
    secret: bytes | None = field(repr=False)
    """None for a retired or revoked Ed25519 key: its private key was destroyed."""

    def verifying_key(self, box: str | None = None, source: str = "") -> VerifyingKey:
        info = self.info
        if info.algorithm is Algorithm.HMAC_SHA256:
            assert self.secret is not None, "the contract requires the secret of an HMAC key"
            return hmac_verifying_key(info.key_id, info.status, self.secret, box=box, source=source)
        public = bytes.fromhex(info.public_key or "")
        return ed25519_verifying_key(info.key_id, info.status, public, box=box, source=source)


KeyEvent = dict[str, str]
"""``{"event": "created" | "retired" | "revoked", "key_id": ..., "new_key_id": ...}`` (``$defs/key_event``)."""


@dataclass(frozen=True)
class KeyStore:
    path: Path
    keys: tuple[StoredKey, ...]
    box: str | None = None
    """The box's identity; None for a key store older than box ids (until bootstrap binds it)."""
    pending: tuple[KeyEvent, ...] = ()

    @property
    def active(self) -> StoredKey:
        return next(k for k in self.keys if k.info.status is KeyStatus.ACTIVE)

    def signer(self) -> Signer:
        active = self.active
        assert active.secret is not None, "the contract requires the secret of the active key"
        return make_signer(active.info.key_id, active.info.algorithm, active.secret)

    def verification_keys(self) -> VerificationKeys:
        return VerificationKeys(k.verifying_key(self.box, self.path.name) for k in self.keys)

    def infos(self) -> tuple[KeyInfo, ...]:
        return tuple(k.info for k in self.keys)

    def find(self, key_id: str) -> StoredKey | None:
        return next((k for k in self.keys if k.info.key_id == key_id), None)


@dataclass(frozen=True)
class KeyRotation:
    path: Path
    new: KeyInfo
    retired: KeyInfo | None


@dataclass(frozen=True)
class KeyRevocation:
    path: Path
    revoked: KeyInfo
    changed: bool
    """False when the key was already revoked (nothing was written)."""
    replacement: KeyInfo | None
    """The new active key, when the revoked key was the active one."""


@dataclass(frozen=True)
class PublicKeyExport:
    path: Path
    keys: tuple[KeyInfo, ...]
    skipped_hmac: tuple[str, ...]
    """Ids of HMAC keys left out: a shared secret cannot be made public."""
    box: str | None = None


class StoreSetup(StrEnum):
    """What :func:`ensure_keystore` did."""

    CREATED = "created"
    BOUND = "bound"
    """An existing key store older than box ids got a box id (and key events for its old keys)."""
    PRESENT = "present"


# -- reading -------------------------------------------------------------------------------------------


def _read_limited(path: Path, *, what: str, private: bool) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        hint = " (run 'vvctl bootstrap' to create it)" if private else ""
        raise StorageError(f"{what} {path} does not exist{hint}") from None
    except OSError as exc:
        raise StorageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{what} {path} is not a regular file")
        if private and os.name == "posix" and info.st_mode & 0o077:
            raise IntegrityError(
                f"{what} {path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"refusing to use it: run 'chmod 600 {path}'"
            )
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise InputError(f"{what} {path} is larger than {MAX_KEY_FILE_BYTES} bytes")
        chunks: list[bytes] = []
        while chunk := os.read(fd, MAX_KEY_FILE_BYTES + 1):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise StorageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _parse_json(data: bytes, *, what: str, path: Path, error: type[InputError | IntegrityError]) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # The parser's message can quote the text around the error, which may be a secret.
        raise error(f"{what} {path} is not valid UTF-8 JSON") from None


def _stored_key(entry: dict[str, Any]) -> StoredKey:
    info = KeyInfo(
        key_id=entry["key_id"],
        algorithm=Algorithm(entry["algorithm"]),
        status=KeyStatus(entry["status"]),
        created=entry["created"],
        retired=entry.get("retired"),
        revoked=entry.get("revoked"),
        revoked_reason=entry.get("revoked_reason"),
        public_key=entry.get("public_key"),
    )
    secret = entry.get("secret")
    return StoredKey(info, bytes.fromhex(secret) if secret is not None else None)


def load_keystore(path: Path) -> KeyStore:
    """Read and check the key store. Raises :class:`IntegrityError` for anything unsafe or malformed."""
    data = _read_limited(path, what="key store", private=True)
    document = _parse_json(data, what="key store", path=path, error=IntegrityError)
    problem = contract_problem(document, "key_store")
    if problem is not None:
        raise IntegrityError(f"key store {path} is malformed: {problem}")
    keys = tuple(_stored_key(entry) for entry in document["keys"])
    ids = [k.info.key_id for k in keys]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise IntegrityError(f"key store {path} is malformed: key id {duplicates[0]} appears twice")
    active = [k for k in keys if k.info.status is KeyStatus.ACTIVE]
    if len(active) != 1:
        raise IntegrityError(f"key store {path} is malformed: it must have exactly one active key, not {len(active)}")
    for key in keys:
        if (
            key.info.algorithm is Algorithm.ED25519
            and key.secret is not None
            and ed25519_public_key(key.secret).hex() != key.info.public_key
        ):
            raise IntegrityError(
                f"key store {path} is malformed: the public key of {key.info.key_id} does not match its private key"
            )
    pending = tuple(dict(event) for event in document.get("pending_events", ()))
    return KeyStore(path, keys, document.get("box"), pending)


def list_keys(path: Path) -> tuple[KeyInfo, ...]:
    return load_keystore(path).infos()


# -- writing -------------------------------------------------------------------------------------------


def _entry(key: StoredKey) -> dict[str, Any]:
    info = key.info
    entry: dict[str, Any] = {
        "key_id": info.key_id,
        "algorithm": info.algorithm.value,
        "status": info.status.value,
        "created": info.created,
    }
    if key.secret is not None:
        entry["secret"] = key.secret.hex()
    optional = {
        "retired": info.retired,
        "revoked": info.revoked,
        "revoked_reason": info.revoked_reason,
        "public_key": info.public_key,
    }
    entry.update({name: value for name, value in optional.items() if value is not None})
    return entry


def _write(path: Path, keys: Sequence[StoredKey], box: str | None, pending: Sequence[KeyEvent] = ()) -> None:
    document: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "kind": KEY_STORE_KIND}
    if box is not None:
        document["box"] = box
    document["keys"] = [_entry(k) for k in keys]
    if pending:
        document["pending_events"] = list(pending)
    problem = contract_problem(document, "key_store")
    if problem is not None:  # a bug in this module, never user input: refuse to write a store we cannot read
        raise IntegrityError(f"refusing to write an invalid key store {path}: {problem}")
    # The temp file is created 0600 and renamed over the old store, so no moment exposes the keys.
    atomic_write_bytes(path, dumps_json(document).encode("utf-8"), mode=KEY_STORE_MODE)


def _new_key(algorithm: Algorithm, taken: set[str], now: str) -> StoredKey:
    key_id = KEY_ID_PREFIX + secrets.token_hex(4)
    while key_id in taken:
        key_id = KEY_ID_PREFIX + secrets.token_hex(4)
    secret = generate_secret()
    public = ed25519_public_key(secret).hex() if algorithm is Algorithm.ED25519 else None
    info = KeyInfo(key_id=key_id, algorithm=algorithm, status=KeyStatus.ACTIVE, created=now, public_key=public)
    return StoredKey(info, secret)


def _update_lock(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def new_box_id() -> str:
    return BOX_PREFIX + secrets.token_hex(8)


def _retire(key: StoredKey, **changes: Any) -> StoredKey:
    """``key`` with ``changes`` to its info; an Ed25519 key that stops being active loses its private key."""
    info = replace(key.info, **changes)
    keep = key.secret if info.algorithm is Algorithm.HMAC_SHA256 or info.status is KeyStatus.ACTIVE else None
    return StoredKey(info, keep)


def _binding(store: KeyStore) -> tuple[str, list[KeyEvent]]:
    """The box id of ``store`` and its pending events; a store older than box ids gets a box id and one
    event for each key that stopped signing before that (so every log records it from now on)."""
    pending = list(store.pending)
    if store.box is not None:
        return store.box, pending
    for key in store.keys:
        if key.info.status is not KeyStatus.ACTIVE:
            pending.append({"event": key.info.status.value, "key_id": key.info.key_id})
    return new_box_id(), pending


def ensure_keystore(path: Path, algorithm: str, clock: Clock = utcnow) -> StoreSetup:
    """Create the key store with a box id and one active key unless it exists.

    An existing key store is read and checked, and changed only when it is older than box ids: then it
    gets one (:attr:`StoreSetup.BOUND`). Running bootstrap twice changes nothing.
    """
    chosen = parse_algorithm(algorithm)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    with exclusive_lock(_update_lock(path), what="key store update", wait=True):
        if path.exists():
            store = load_keystore(path)
            if store.box is not None:
                return StoreSetup.PRESENT
            box, pending = _binding(store)
            _write(path, [_retire(k) for k in store.keys], box, pending)
            return StoreSetup.BOUND
        key = _new_key(chosen, set(), rfc3339(clock()))
        _write(path, [key], new_box_id(), [{"event": "created", "key_id": key.info.key_id}])
    return StoreSetup.CREATED


def rotate_key(path: Path, algorithm: str, *, clock: Clock = utcnow) -> KeyRotation:
    """Retire the active key and make a new one (of ``algorithm``) active; queue the ``retired`` event."""
    chosen = parse_algorithm(algorithm)
    with exclusive_lock(_update_lock(path), what="key store update", wait=True):
        store = load_keystore(path)
        box, pending = _binding(store)
        now = rfc3339(clock())
        old = store.active
        retired = _retire(old, status=KeyStatus.RETIRED, retired=now)
        new = _new_key(chosen, {k.info.key_id for k in store.keys}, now)
        pending.append({"event": "retired", "key_id": old.info.key_id, "new_key_id": new.info.key_id})
        _write(path, [retired if k is old else _retire(k) for k in store.keys] + [new], box, pending)
    return KeyRotation(path, new.info, retired.info)


def revoke_key(
    path: Path, key_id: str, *, algorithm: str, reason: str | None = None, clock: Clock = utcnow
) -> KeyRevocation:
    """Revoke ``key_id``. Revoking the active key also creates a new active key (of ``algorithm``).

    Everything the key signed then verifies as invalid with reason ``revoked_key``.
    """
    chosen = parse_algorithm(algorithm)
    with exclusive_lock(_update_lock(path), what="key store update", wait=True):
        store = load_keystore(path)
        target = store.find(key_id)
        if target is None:
            raise UsageError(f"key store {path} has no key {key_id!r} (see 'vvctl keys list')")
        if target.info.status is KeyStatus.REVOKED:
            return KeyRevocation(path, target.info, changed=False, replacement=None)
        box, pending = _binding(store)
        now = rfc3339(clock())
        revoked = _retire(target, status=KeyStatus.REVOKED, revoked=now, revoked_reason=reason or None)
        keys = [revoked if k is target else _retire(k) for k in store.keys]
        replacement = None
        event: KeyEvent = {"event": "revoked", "key_id": key_id}
        if target.info.status is KeyStatus.ACTIVE:
            replacement = _new_key(chosen, {k.info.key_id for k in store.keys}, now)
            keys.append(replacement)
            event["new_key_id"] = replacement.info.key_id
        _write(path, keys, box, [*pending, event])
    return KeyRevocation(path, revoked.info, changed=True, replacement=replacement.info if replacement else None)


def drop_pending(path: Path, recorded: Sequence[KeyEvent]) -> None:
    """Remove ``recorded`` (events now written to every log) from the key store's pending events."""
    with exclusive_lock(_update_lock(path), what="key store update", wait=True):
        store = load_keystore(path)
        left = [event for event in store.pending if event not in recorded]
        if len(left) != len(store.pending):
            _write(path, store.keys, store.box, left)


# -- public keys ---------------------------------------------------------------------------------------


def export_public_keys(key_store: Path, out: Path, *, clock: Clock = utcnow) -> PublicKeyExport:
    """Write the Ed25519 public keys (every status) an auditor needs; HMAC keys are secret and left out."""
    if out.resolve() == key_store.resolve():
        raise UsageError(f"refusing to export public keys over the key store itself ({out})")
    store = load_keystore(key_store)
    public = tuple(k.info for k in store.keys if k.info.algorithm is Algorithm.ED25519)
    skipped = tuple(k.info.key_id for k in store.keys if k.info.algorithm is Algorithm.HMAC_SHA256)
    if not public:
        raise InputError(
            f"key store {key_store} has no Ed25519 key, and HMAC keys are secret: set "
            "signing_algorithm = \"ed25519\" and run 'vvctl keys rotate' first"
        )
    entries = []
    for info in public:
        entry: dict[str, Any] = {
            "key_id": info.key_id,
            "algorithm": info.algorithm.value,
            "status": info.status.value,
            "created": info.created,
            "public_key": info.public_key,
        }
        extra = {"retired": info.retired, "revoked": info.revoked, "revoked_reason": info.revoked_reason}
        entry.update({name: value for name, value in extra.items() if value is not None})
        entries.append(entry)
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": PUBLIC_KEYS_KIND,
        "exported": rfc3339(clock()),
        "keys": entries,
    }
    if store.box is not None:
        document["box"] = store.box
    problem = contract_problem(document, "public_keys")
    if problem is not None:
        raise IntegrityError(f"refusing to write invalid public keys {out}: {problem}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    atomic_write_bytes(out, dumps_json(document).encode("utf-8"), mode=0o644)
    return PublicKeyExport(out, public, skipped, store.box)


def load_public_keys(path: Path) -> VerificationKeys:
    """Read a file written by :func:`export_public_keys`."""
    data = _read_limited(path, what="public key file", private=False)
    document = _parse_json(data, what="public key file", path=path, error=InputError)
    problem = contract_problem(document, "public_keys")
    if problem is not None:
        raise InputError(f"public key file {path} is malformed: {problem}")
    ids = [entry["key_id"] for entry in document["keys"]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"public key file {path} is malformed: key id {duplicates[0]} appears twice")
    box = document.get("box")
    try:
        return VerificationKeys(
            ed25519_verifying_key(
                entry["key_id"],
                KeyStatus(entry["status"]),
                bytes.fromhex(entry["public_key"]),
                box=box,
                source=path.name,
            )
            for entry in document["keys"]
        )
    except IntegrityError as exc:  # 32 bytes that are not a point on the curve
        raise InputError(f"public key file {path} is malformed: {exc}") from None


def load_verification_keys(key_store: Path | None, public_keys: Sequence[Path] = ()) -> VerificationKeys:
    """Every key a verifier may use: the key store's (if given) plus exported public keys."""
    keys = load_keystore(key_store).verification_keys() if key_store is not None else VerificationKeys()
    for path in public_keys:
        keys = keys.merged(load_public_keys(path))
    return keys


__all__ = [
    "KEY_STORE_MODE",
    "KeyEvent",
    "KeyInfo",
    "KeyRevocation",
    "KeyRotation",
    "KeyStore",
    "PublicKeyExport",
    "StoreSetup",
    "StoredKey",
    "drop_pending",
    "ensure_keystore",
    "export_public_keys",
    "list_keys",
    "load_keystore",
    "load_public_keys",
    "load_verification_keys",
    "new_box_id",
    "revoke_key",
    "rotate_key",
]
