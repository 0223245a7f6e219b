"""The key store: one JSON file (mode 0600) with every signing key vvctl ever used.

Format (``$defs/key_store`` in ``schemas/contract.signature.json``)::

    {"schema_version": 1, "kind": "vvctl-key-store",
     "keys": [{"key_id": "k-1a2b3c4d", "algorithm": "hmac-sha256" | "ed25519",
               "status": "active" | "retired" | "revoked", "created": "...Z",
               "retired": "...Z", "revoked": "...Z", "revoked_reason": "...",
               "secret": "<32 bytes hex>", "public_key": "<32 bytes hex, ed25519 only>"}]}

Exactly one key is active. Rotation retires it (what it signed stays valid) and adds a new active key;
revocation marks a key so that everything it signed verifies as invalid ("revoked_key").

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
    secret: bytes = field(repr=False)

    def verifying_key(self) -> VerifyingKey:
        info = self.info
        if info.algorithm is Algorithm.HMAC_SHA256:
            return hmac_verifying_key(info.key_id, info.status, self.secret)
        return ed25519_verifying_key(info.key_id, info.status, bytes.fromhex(info.public_key or ""))


@dataclass(frozen=True)
class KeyStore:
    path: Path
    keys: tuple[StoredKey, ...]

    @property
    def active(self) -> StoredKey:
        return next(k for k in self.keys if k.info.status is KeyStatus.ACTIVE)

    def signer(self) -> Signer:
        active = self.active
        return make_signer(active.info.key_id, active.info.algorithm, active.secret)

    def verification_keys(self) -> VerificationKeys:
        return VerificationKeys(k.verifying_key() for k in self.keys)

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
    return StoredKey(info, bytes.fromhex(entry["secret"]))


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
        if key.info.algorithm is Algorithm.ED25519 and ed25519_public_key(key.secret).hex() != key.info.public_key:
            raise IntegrityError(
                f"key store {path} is malformed: the public key of {key.info.key_id} does not match its private key"
            )
    return KeyStore(path, keys)


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
        "secret": key.secret.hex(),
    }
    optional = {
        "retired": info.retired,
        "revoked": info.revoked,
        "revoked_reason": info.revoked_reason,
        "public_key": info.public_key,
    }
    entry.update({name: value for name, value in optional.items() if value is not None})
    return entry


def _write(path: Path, keys: Sequence[StoredKey]) -> None:
    document = {"schema_version": SCHEMA_VERSION, "kind": KEY_STORE_KIND, "keys": [_entry(k) for k in keys]}
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


def ensure_keystore(path: Path, algorithm: str, clock: Clock = utcnow) -> bool:
    """Create the key store with one active key unless it exists. True when it was created.

    An existing key store is read and checked, never changed (running bootstrap twice changes nothing).
    """
    chosen = parse_algorithm(algorithm)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    with exclusive_lock(_update_lock(path), what="key store update", wait=True):
        if path.exists():
            load_keystore(path)
            return False
        _write(path, [_new_key(chosen, set(), rfc3339(clock()))])
    return True


def rotate_key(path: Path, algorithm: str, *, clock: Clock = utcnow) -> KeyRotation:
    """Retire the active key and make a new one (of ``algorithm``) active."""
    chosen = parse_algorithm(algorithm)
    with exclusive_lock(_update_lock(path), what="key store update", wait=True):
        store = load_keystore(path)
        now = rfc3339(clock())
        old = store.active
        retired = StoredKey(replace(old.info, status=KeyStatus.RETIRED, retired=now), old.secret)
        new = _new_key(chosen, {k.info.key_id for k in store.keys}, now)
        _write(path, [retired if k is old else k for k in store.keys] + [new])
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
        now = rfc3339(clock())
        revoked = StoredKey(
            replace(target.info, status=KeyStatus.REVOKED, revoked=now, revoked_reason=reason or None),
            target.secret,
        )
        keys = [revoked if k is target else k for k in store.keys]
        replacement = None
        if target.info.status is KeyStatus.ACTIVE:
            replacement = _new_key(chosen, {k.info.key_id for k in store.keys}, now)
            keys.append(replacement)
        _write(path, keys)
    return KeyRevocation(path, revoked.info, changed=True, replacement=replacement.info if replacement else None)


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
    document = {
        "schema_version": SCHEMA_VERSION,
        "kind": PUBLIC_KEYS_KIND,
        "exported": rfc3339(clock()),
        "keys": entries,
    }
    problem = contract_problem(document, "public_keys")
    if problem is not None:
        raise IntegrityError(f"refusing to write invalid public keys {out}: {problem}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    atomic_write_bytes(out, dumps_json(document).encode("utf-8"), mode=0o644)
    return PublicKeyExport(out, public, skipped)


def load_public_keys(path: Path) -> VerificationKeys:
    """Read a file written by :func:`export_public_keys`."""
    data = _read_limited(path, what="public key file", private=False)
    document = _parse_json(data, what="public key file", path=path, error=InputError)
    problem = contract_problem(document, "public_keys")
    if problem is not None:
        raise InputError(f"public key file {path} is malformed: {problem}")
    return VerificationKeys(
        ed25519_verifying_key(entry["key_id"], KeyStatus(entry["status"]), bytes.fromhex(entry["public_key"]))
        for entry in document["keys"]
    )


def load_verification_keys(key_store: Path | None, public_keys: Sequence[Path] = ()) -> VerificationKeys:
    """Every key a verifier may use: the key store's (if given) plus exported public keys."""
    keys = load_keystore(key_store).verification_keys() if key_store is not None else VerificationKeys()
    for path in public_keys:
        keys = keys.merged(load_public_keys(path))
    return keys


__all__ = [
    "KEY_STORE_MODE",
    "KeyInfo",
    "KeyRevocation",
    "KeyRotation",
    "KeyStore",
    "PublicKeyExport",
    "StoredKey",
    "ensure_keystore",
    "export_public_keys",
    "list_keys",
    "load_keystore",
    "load_public_keys",
    "load_verification_keys",
    "revoke_key",
    "rotate_key",
]
