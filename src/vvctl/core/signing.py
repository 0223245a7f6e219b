"""Signature algorithms: HMAC-SHA256 (default, shared key) and Ed25519 (public-key verification).

This module holds key material only in memory and never puts it in a ``repr``, a message or an error.
Files (the key store, exported public keys) are :mod:`vvctl.core.keystore`'s business.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from vvctl.core.errors import IntegrityError, UsageError
from vvctl.core.schemas import json_path, load_schema

SECRET_BYTES = 32


class Algorithm(StrEnum):
    HMAC_SHA256 = "hmac-sha256"
    ED25519 = "ed25519"


class KeyStatus(StrEnum):
    ACTIVE = "active"
    """Signs new documents (exactly one key in a key store)."""
    RETIRED = "retired"
    """Signs nothing new; what it signed stays valid."""
    REVOKED = "revoked"
    """Everything it signed is invalid (the key is presumed compromised)."""


def parse_algorithm(name: str) -> Algorithm:
    try:
        return Algorithm(name)
    except ValueError:
        known = ", ".join(a.value for a in Algorithm)
        raise IntegrityError(f"unknown signing algorithm {name!r} (known: {known})") from None


def generate_secret() -> bytes:
    """256 bits from the OS CSPRNG: an HMAC key or an Ed25519 private key seed."""
    return os.urandom(SECRET_BYTES)


def ed25519_public_key(seed: bytes) -> bytes:
    """The raw 32-byte public key that belongs to an Ed25519 private key seed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Signer:
    """Signs with one key. ``sign`` returns the signature as lowercase hex."""

    key_id: str
    algorithm: Algorithm
    _sign: Callable[[bytes], bytes] = field(repr=False, compare=False)

    def sign(self, message: bytes) -> str:
        return self._sign(message).hex()


def make_signer(key_id: str, algorithm: Algorithm, secret: bytes) -> Signer:
    if algorithm is Algorithm.HMAC_SHA256:
        return Signer(key_id, algorithm, lambda message: hmac.digest(secret, message, hashlib.sha256))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(secret)
    return Signer(key_id, algorithm, private.sign)


@dataclass(frozen=True)
class VerifyingKey:
    """One key as a verifier sees it: its id, algorithm, status and a check for signatures."""

    key_id: str
    algorithm: Algorithm
    status: KeyStatus
    _check: Callable[[bytes, bytes], bool] = field(repr=False, compare=False)
    box: str | None = None
    """The box whose key store holds the key; None for a key store or export older than box ids."""
    source: str = ""
    """Where the key came from (a file name), for messages."""

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` (raw bytes) is this key's signature of ``message``."""
        return self._check(message, signature)


def hmac_verifying_key(
    key_id: str, status: KeyStatus, secret: bytes, *, box: str | None = None, source: str = ""
) -> VerifyingKey:
    def check(message: bytes, signature: bytes) -> bool:
        # Constant-time comparison: timing must not reveal how many leading bytes of a forgery matched.
        return hmac.compare_digest(hmac.digest(secret, message, hashlib.sha256), signature)

    return VerifyingKey(key_id, Algorithm.HMAC_SHA256, status, check, box, source)


def ed25519_verifying_key(
    key_id: str, status: KeyStatus, public_key: bytes, *, box: str | None = None, source: str = ""
) -> VerifyingKey:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise IntegrityError(f"key {key_id}: not an Ed25519 public key") from None

    def check(message: bytes, signature: bytes) -> bool:
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return VerifyingKey(key_id, Algorithm.ED25519, status, check, box, source)


class DuplicateKeyError(UsageError):
    """The same key id was given twice (exit 2): which copy holds the truth is not for the verifier to guess."""


class VerificationKeys(Mapping[str, VerifyingKey]):
    """The keys a verifier knows, by key id. Built once and reused for every file.

    A key id given twice is refused (:class:`DuplicateKeyError`), even with identical copies: an older key
    export next to a newer one would otherwise let the one read last decide a key's status. Key lifetimes
    come from the chain's own key events, so the newest export alone is enough.
    """

    def __init__(self, keys: Iterable[VerifyingKey] = ()) -> None:
        self._keys: dict[str, VerifyingKey] = {}
        for key in keys:
            known = self._keys.get(key.key_id)
            if known is not None:
                where = f" (in {known.source} and {key.source})" if known.source and key.source else ""
                raise DuplicateKeyError(f"key {key.key_id} is given twice{where}; give each key file once")
            self._keys[key.key_id] = key

    def __getitem__(self, key_id: str) -> VerifyingKey:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def merged(self, other: VerificationKeys) -> VerificationKeys:
        return VerificationKeys([*self._keys.values(), *other.values()])

    @property
    def boxes(self) -> frozenset[str]:
        """The boxes the keys belong to (keys from sources older than box ids name none)."""
        return frozenset(key.box for key in self._keys.values() if key.box is not None)


SIGNATURE_CONTRACT = "contract.signature.json"


@functools.cache
def _contract_validator(definition: str) -> Any:
    import jsonschema

    contract = load_schema(SIGNATURE_CONTRACT)
    if definition not in contract["$defs"]:
        raise KeyError(definition)
    # The contract's $defs refer to each other locally, so re-rooting a copy needs no schema registry.
    schema = {**contract, "$ref": f"#/$defs/{definition}"}
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def contract_problem(document: Any, definition: str) -> str | None:
    """The first way ``document`` breaks ``$defs/<definition>`` of the signature contract, or None.

    The text names the field and the rule, never the value: a key store holds secrets, and a schema
    library's own messages quote the offending value.
    """
    errors = list(_contract_validator(definition).iter_errors(document))
    if not errors:
        return None
    import jsonschema

    best = jsonschema.exceptions.best_match(errors)
    where = json_path(best.absolute_path)
    if best.validator == "required" and isinstance(best.instance, dict):
        missing = [k for k in best.validator_value if k not in best.instance]
        if missing:
            return f"{json_path([*best.absolute_path, missing[0]])}: required key missing"
    if best.validator == "additionalProperties" and isinstance(best.instance, dict):
        allowed = set(best.schema.get("properties", {}))
        extra = sorted(str(k) for k in best.instance if k not in allowed)
        if extra:
            return f"{json_path([*best.absolute_path, extra[0]])}: unknown key"
    if best.validator == "type":
        return f"{where}: must be of type {best.validator_value}"
    return f"{where}: value not allowed (rule '{best.validator}')"


__all__ = [
    "SIGNATURE_CONTRACT",
    "Algorithm",
    "DuplicateKeyError",
    "KeyStatus",
    "Signer",
    "VerificationKeys",
    "VerifyingKey",
    "contract_problem",
    "ed25519_public_key",
    "ed25519_verifying_key",
    "generate_secret",
    "hmac_verifying_key",
    "make_signer",
    "parse_algorithm",
]
