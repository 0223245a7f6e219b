"""The key store: private file, rotation, revocation, public-key export; secrets never in messages."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from vvctl.core.errors import InputError, IntegrityError, StorageError, UsageError
from vvctl.core.keystore import (
    StoreSetup,
    ensure_keystore,
    export_public_keys,
    load_keystore,
    load_public_keys,
    load_verification_keys,
    revoke_key,
    rotate_key,
)
from vvctl.core.signing import Algorithm, KeyStatus


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "keystore.json"
    assert ensure_keystore(path, "hmac-sha256") is StoreSetup.CREATED
    return path


def secrets_of(path: Path) -> list[str]:
    return [entry["secret"] for entry in json.loads(path.read_text())["keys"]]


def test_created_private_with_one_active_key_and_idempotent(store: Path) -> None:
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    before = store.read_bytes()
    assert ensure_keystore(store, "ed25519") is StoreSetup.PRESENT
    assert store.read_bytes() == before
    keys = load_keystore(store).keys
    assert [(k.info.status, k.info.algorithm) for k in keys] == [(KeyStatus.ACTIVE, Algorithm.HMAC_SHA256)]
    assert "secret" not in repr(keys[0]) and keys[0].secret.hex() not in repr(keys[0])


def test_rotate_retires_and_adds(store: Path) -> None:
    old = load_keystore(store).active.info.key_id
    rotation = rotate_key(store, "ed25519")
    assert rotation.retired is not None and rotation.retired.key_id == old
    infos = {k.info.key_id: k.info for k in load_keystore(store).keys}
    assert infos[old].status is KeyStatus.RETIRED and infos[old].retired
    assert infos[rotation.new.key_id].status is KeyStatus.ACTIVE
    assert infos[rotation.new.key_id].algorithm is Algorithm.ED25519
    assert stat.S_IMODE(store.stat().st_mode) == 0o600


def test_revoke_semantics(store: Path) -> None:
    first = load_keystore(store).active.info.key_id
    second = rotate_key(store, "hmac-sha256").new.key_id
    done = revoke_key(store, first, algorithm="hmac-sha256", reason="laptop stolen")
    assert done.changed and done.replacement is None and done.revoked.revoked_reason == "laptop stolen"
    assert load_keystore(store).active.info.key_id == second
    assert revoke_key(store, first, algorithm="hmac-sha256").changed is False
    active = revoke_key(store, second, algorithm="hmac-sha256")
    assert active.replacement is not None and load_keystore(store).active.info.key_id == active.replacement.key_id
    statuses = [k.info.status for k in load_keystore(store).keys]
    assert statuses == [KeyStatus.REVOKED, KeyStatus.REVOKED, KeyStatus.ACTIVE]
    with pytest.raises(UsageError, match="no key"):
        revoke_key(store, "k-00000000", algorithm="hmac-sha256")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_world_readable_store_is_refused(store: Path) -> None:
    store.chmod(0o644)
    with pytest.raises(IntegrityError, match="chmod 600"):
        load_keystore(store)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda doc: doc["keys"][0].update(secret=doc["keys"][0]["secret"][:-1]),
        lambda doc: doc["keys"][0].update(status="retired"),
        lambda doc: doc["keys"][0].update(extra=doc["keys"][0]["secret"]),
        lambda doc: doc["keys"].append(dict(doc["keys"][0])),
    ],
    ids=["short-secret", "no-active", "unknown-field", "duplicate-id"],
)
def test_malformed_store_messages_do_not_leak_the_secret(store: Path, mangle) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(store.read_text())
    secret = document["keys"][0]["secret"]
    mangle(document)
    store.write_text(json.dumps(document))
    with pytest.raises(IntegrityError, match="malformed") as caught:
        load_keystore(store)
    assert secret not in str(caught.value) and secret[:-1] not in str(caught.value)


def test_broken_json_message_does_not_quote_the_file(store: Path) -> None:
    secret = secrets_of(store)[0]
    store.write_text('{"keys": [{"secret": "' + secret + '"')
    with pytest.raises(IntegrityError) as caught:
        load_keystore(store)
    assert secret not in str(caught.value)


def test_missing_store_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="vvctl bootstrap"):
        load_keystore(tmp_path / "nope.json")


def test_export_public_has_ed25519_keys_only_and_verifies(store: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no Ed25519 key"):
        export_public_keys(store, tmp_path / "pub.json")
    rotate_key(store, "ed25519")
    export = export_public_keys(store, tmp_path / "pub.json")
    text = (tmp_path / "pub.json").read_text()
    assert len(export.keys) == 1 and len(export.skipped_hmac) == 1
    for secret in secrets_of(store):
        assert secret not in text
    assert "secret" not in text
    public = load_public_keys(tmp_path / "pub.json")
    assert list(public) == [export.keys[0].key_id]
    merged = load_verification_keys(None, [tmp_path / "pub.json"])
    assert merged[export.keys[0].key_id].status is KeyStatus.ACTIVE
    with pytest.raises(UsageError, match="over the key store"):
        export_public_keys(store, store)
