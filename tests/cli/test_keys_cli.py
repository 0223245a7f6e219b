"""``vvctl keys``: list, rotate, revoke, export-public; each change is a LogLine; no secret is ever printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke


@pytest.fixture
def root(invoke: Invoke, tmp_path: Path) -> Path:
    root = tmp_path / "T"
    assert invoke("bootstrap", "--storage-root", str(root)).exit_code == 0
    return root


def secrets_of(root: Path) -> list[str]:
    keys = json.loads((root / "state" / "keystore.json").read_text())["keys"]
    return [key["secret"] for key in keys if "secret" in key]


def outputs(result: object) -> str:
    return getattr(result, "stdout", "") + getattr(result, "stderr", "")


def test_rotate_and_revoke_are_recorded_and_signed_by_the_new_key(invoke: Invoke, root: Path) -> None:
    first = invoke.json("keys", "list")["keys"][0]["key_id"]
    rotated = invoke.json("keys", "rotate")
    new = rotated["active"]["key_id"]
    assert rotated["key"]["key_id"] == first and rotated["key"]["status"] == "retired"
    record = json.loads(Path(rotated["logline"]).read_bytes())
    assert record["who"] == "vvctl keys" and record["source"] == {"type": "key", "id": new}
    assert record["signature_details"]["key_id"] == new

    revoked = invoke.json("keys", "revoke", first, "--reason", "old laptop")
    assert revoked["changed"] is True and revoked["key"]["status"] == "revoked" and revoked["active"] is None
    again = invoke.json("keys", "revoke", first)
    assert again["changed"] is False and again["logline"] is None
    listed = {k["key_id"]: k["status"] for k in invoke.json("keys", "list")["keys"]}
    assert listed == {first: "revoked", new: "active"}

    # The first key's "created" event and the bootstrap LogLine were signed with the key now revoked: they
    # verify as INVALID with that reason. The rotation and revocation events, and the run record of each
    # of the three `keys` runs (through the job runner), are signed by the new key.
    report = invoke.json("verify-logline", str(root / "loglines"), expect=1)
    reasons = [r["reason"] for r in report["results"]]
    assert reasons == ["revoked_key", "revoked_key"] + [None] * 5
    events = [r["key_event"] for r in report["results"] if r["key_event"]]
    assert events[1:] == [
        {"event": "retired", "key_id": first, "new_key_id": new},
        {"event": "revoked", "key_id": first},
    ]
    runs = [json.loads(p.read_bytes()) for p in sorted((root / "loglines" / "jobs").glob("*keys-[0-9]*.logline.json"))]
    assert [r["did"] for r in runs] == ["changed the signing keys"] * 3
    assert [r["this"] for r in runs][-1] == f"key {first} was already revoked"


def test_unknown_key_is_a_usage_error(invoke: Invoke, root: Path) -> None:
    result = invoke("keys", "revoke", "k-deadbeef")
    assert result.exit_code == 2 and "no key" in result.stderr


def test_export_public_needs_an_ed25519_key(invoke: Invoke, root: Path, tmp_path: Path) -> None:
    result = invoke("keys", "export-public", "--out", str(tmp_path / "pub.json"))
    assert result.exit_code == 8 and "no Ed25519 key" in result.stderr
    invoke.config.write_text(invoke.config.read_text() + '\nsigning_algorithm = "ed25519"\n')
    assert invoke("keys", "rotate").exit_code == 0
    report = invoke.json("keys", "export-public", "--out", str(tmp_path / "pub.json"))
    assert len(report["keys"]) == 1 and len(report["skipped_hmac"]) == 1
    assert "secret" not in (tmp_path / "pub.json").read_text()


def test_no_secret_in_any_output(invoke: Invoke, root: Path, tmp_path: Path) -> None:
    invoke.config.write_text(invoke.config.read_text() + '\nsigning_algorithm = "ed25519"\n')
    seen: set[str] = set(secrets_of(root))

    def run(*args: str) -> object:
        result = invoke(*args)
        # Collected after every command: rotation destroys a retired Ed25519 private key.
        seen.update(secrets_of(root))
        return result

    runs = [
        run("keys", "list"),
        run("--json", "keys", "list"),
        run("keys", "rotate"),
        run("--json", "keys", "rotate"),
        run("keys", "export-public", "--out", str(tmp_path / "p.json")),
        run("--json", "keys", "export-public", "--out", str(tmp_path / "p.json")),
        run("--verbose", "keys", "revoke", "nope"),
    ]
    first = invoke.json("keys", "list")["keys"][0]["key_id"]
    runs.append(run("--json", "keys", "revoke", first))
    runs.append(run("keys", "revoke", first))
    key_store = root / "state" / "keystore.json"
    runs.append(
        subprocess.run(
            [sys.executable, "-m", "vvctl", "--config", str(invoke.config), "--json", "keys", "list"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    secrets = sorted(seen)
    assert len(secrets) == 3  # bootstrap, two rotations (revoking a retired key adds none)
    assert len(secrets_of(root)) == 2  # the retired Ed25519 key's private half is gone
    for result in runs:
        text = outputs(result)
        for secret in secrets:
            assert secret not in text
    assert json.loads(runs[-1].stdout)["key_store"] == str(key_store)
    # A broken key store: the error names the problem, never the secret.
    document = json.loads(key_store.read_text())
    document["keys"][0]["secret"] = document["keys"][0]["secret"][:-2]
    key_store.write_text(json.dumps(document))
    broken = invoke("--verbose", "keys", "list")
    assert broken.exit_code == 5 and "malformed" in broken.stderr
    for secret in secrets:
        assert secret[:-2] not in outputs(broken)
