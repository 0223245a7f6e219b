"""Key lifetimes bound by the chain, key events in every log, box ids, and chains older than box ids."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vvctl.core.canonical import canonicalize
from vvctl.core.keyevents import record_pending
from vvctl.core.keystore import StoreSetup, ensure_keystore, load_keystore, rotate_key
from vvctl.core.logline import LogLineDraft, LogLineWriter, signed_bytes
from vvctl.core.settings import Settings, load_settings
from vvctl.core.signing import KeyStatus, Signer, VerificationKeys, hmac_verifying_key, make_signer
from vvctl.core.verify import Reason, Verdict, verify_paths

BOX = "b-0123456789abcdef"

# -- the property: a record verifies exactly when its key was valid at its chain position --------------


@dataclass
class Model:
    """A box's key history and logs, built record by record; ``valid`` is the model's own verdict."""

    logs: tuple[str, ...]
    secrets: dict[str, bytes] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    active: str = ""
    revoked: set[str] = field(default_factory=set)
    retired_at: dict[tuple[str, str], int] = field(default_factory=dict)
    """(log, key id) -> the seq of the key's retirement event in that log."""
    records: dict[str, list[tuple[bytes, str]]] = field(default_factory=dict)
    """log -> [(file bytes, signing key id)]"""

    def new_key(self) -> str:
        key_id = f"k-{len(self.order):08x}"
        self.secrets[key_id] = hashlib.sha256(key_id.encode()).digest()
        self.order.append(key_id)
        return key_id

    def signer(self, key_id: str) -> Signer:
        from vvctl.core.signing import Algorithm

        return make_signer(key_id, Algorithm.HMAC_SHA256, self.secrets[key_id])

    def append(self, log: str, key_id: str, event: dict[str, str] | None = None) -> None:
        chain = self.records.setdefault(log, [])
        seq = len(chain) + 1
        prev = hashlib.sha256(chain[-1][0]).hexdigest() if chain else "0" * 64
        record: dict[str, Any] = {
            "schema_version": 1,
            "log": log,
            "seq": seq,
            "who": "model",
            "did": "did",
            "this": f"record {seq}",
            "when": "2026-01-01T00:00:00Z",
            "status": "ok",
            "source": {"type": "video", "id": "v"},
            "box": BOX,
            "prev": prev,
        }
        if event is not None:
            record["key_event"] = event
        signer = self.signer(key_id)
        record["signature_details"] = {
            "algorithm": signer.algorithm.value,
            "key_id": key_id,
            "signature": signer.sign(signed_bytes(record)),
        }
        chain.append((canonicalize(record), key_id))
        if event is not None and event["event"] == "retired":
            self.retired_at.setdefault((log, event["key_id"]), seq)

    def event(self, event: dict[str, str]) -> None:
        for log in self.logs:
            self.append(log, self.active, event)

    def valid(self, log: str, seq: int, key_id: str) -> bool:
        retired = self.retired_at.get((log, key_id))
        return key_id not in self.revoked and (retired is None or seq <= retired)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.sampled_from(["videos", "jobs"]), st.integers(0, 50)),
        st.tuples(st.just("forge"), st.sampled_from(["videos", "jobs"]), st.integers(0, 50)),
        st.tuples(st.just("rotate"), st.just(""), st.just(0)),
        st.tuples(st.just("revoke"), st.just(""), st.integers(0, 50)),
    ),
    max_size=25,
)


def build(ops: list[tuple[str, str, int]]) -> Model:
    model = Model(logs=("jobs", "videos"))
    model.active = model.new_key()
    model.event({"event": "created", "key_id": model.active})
    for op, log, number in ops:
        if op == "append":
            model.append(log, model.active)
        elif op == "forge":  # any key that exists, whatever its state: a thief's copy
            model.append(log, model.order[number % len(model.order)])
        elif op == "rotate":
            old, model.active = model.active, model.new_key()
            model.event({"event": "retired", "key_id": old, "new_key_id": model.active})
        else:
            target = model.order[number % len(model.order)]
            if target in model.revoked:
                continue
            model.revoked.add(target)
            event = {"event": "revoked", "key_id": target}
            if target == model.active:
                model.active = model.new_key()
                event["new_key_id"] = model.active
            model.event(event)
    return model


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, knows_lifetimes=st.booleans())
def test_a_record_verifies_exactly_when_its_key_was_valid_at_its_position(
    ops: list[tuple[str, str, int]], knows_lifetimes: bool
) -> None:
    model = build(ops)
    # The auditor's keys: either a key file that knows every retirement and revocation, or one that
    # calls every key active (an export older than all the events): the chain alone must decide.
    status = {key_id: KeyStatus.ACTIVE for key_id in model.order}
    if knows_lifetimes:
        for (_, key_id), _seq in model.retired_at.items():
            status[key_id] = KeyStatus.RETIRED
        status.update(dict.fromkeys(model.revoked, KeyStatus.REVOKED))
        status[model.active] = KeyStatus.ACTIVE if model.active not in model.revoked else KeyStatus.REVOKED
    keys = VerificationKeys(
        hmac_verifying_key(key_id, status[key_id], model.secrets[key_id], box=BOX) for key_id in model.order
    )
    with tempfile.TemporaryDirectory() as work:
        expected: dict[str, bool] = {}
        for log, chain in model.records.items():
            (Path(work) / log).mkdir()
            for seq, (data, key_id) in enumerate(chain, start=1):
                path = Path(work) / log / f"{seq:08d}.r.logline.json"
                path.write_bytes(data)
                expected[str(path)] = model.valid(log, seq, key_id)
        report = verify_paths([Path(work)], keys)
    got = {r.path: r.valid for r in report.results}
    assert got == expected
    for result in report.results:
        if not result.valid:
            assert result.reason in {Reason.KEY_RETIRED, Reason.REVOKED_KEY}
    assert report.ok is all(expected.values())


# -- the real key commands ------------------------------------------------------------------------------


def box_settings(tmp_path: Path, algorithm: str = "hmac-sha256") -> Settings:
    flags = {"storage_root": str(tmp_path / "storage"), "signing_algorithm": algorithm}
    return load_settings(tmp_path / "config.toml", env={}, flags=flags).settings


def draft(number: int) -> LogLineDraft:
    return LogLineDraft("vvctl test", "analysed video", f"video {number}", "ok", {"type": "video", "id": f"v{number}"})


def events(directory: Path) -> list[dict[str, str]]:
    found = []
    for path in sorted(directory.glob("*.logline.json")):
        record = json.loads(path.read_bytes())
        if "key_event" in record:
            found.append(record["key_event"])
    return found


def test_events_reach_every_log_and_an_interrupted_rotation_is_completed(tmp_path: Path) -> None:
    settings_ = box_settings(tmp_path)
    assert ensure_keystore(settings_.key_store, "hmac-sha256") is StoreSetup.CREATED
    record_pending(settings_)
    writer = LogLineWriter(settings_)
    for log in ("videos", "exports"):
        writer.append(log, draft(0), slug="v")
    first = load_keystore(settings_.key_store).active.info.key_id
    rotation = rotate_key(settings_.key_store, "hmac-sha256")  # killed here: nothing recorded yet
    assert load_keystore(settings_.key_store).pending
    recorded = record_pending(settings_)  # what the next key command or bootstrap does
    assert [sorted(r.paths) for r in recorded] == [["exports", "jobs", "videos"]]
    assert not load_keystore(settings_.key_store).pending
    retired = {"event": "retired", "key_id": first, "new_key_id": rotation.new.key_id}
    for log in ("videos", "exports", "jobs"):
        assert events(settings_.storage_root / "loglines" / log)[-1] == retired
    report = verify_paths([settings_.storage_root / "loglines"], load_keystore(settings_.key_store).verification_keys())
    assert report.ok, [(r.path, r.reason) for r in report.results if not r.valid]


def test_ed25519_rotation_destroys_the_retired_private_key(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    ensure_keystore(path, "ed25519")
    old = load_keystore(path).active
    rotate_key(path, "hmac-sha256")
    rotate_key(path, "ed25519")
    stored = {k.info.key_id: k for k in load_keystore(path).keys}
    assert stored[old.info.key_id].secret is None and stored[old.info.key_id].info.public_key
    assert old.secret is not None and old.secret.hex() not in path.read_text()
    assert all(k.secret is not None for k in stored.values() if k.info.algorithm.value == "hmac-sha256")


def test_records_and_exports_name_the_box(tmp_path: Path) -> None:
    from vvctl.core.keystore import export_public_keys, load_public_keys

    settings_ = box_settings(tmp_path, "ed25519")
    ensure_keystore(settings_.key_store, "ed25519")
    box = load_keystore(settings_.key_store).box
    assert box is not None and box.startswith("b-")
    written = LogLineWriter(settings_).append("videos", draft(0), slug="v")
    assert written.record["box"] == box
    export = export_public_keys(settings_.key_store, tmp_path / "pub.json")
    assert export.box == box and json.loads((tmp_path / "pub.json").read_text())["box"] == box
    assert {k.box for k in load_public_keys(tmp_path / "pub.json").values()} == {box}


# -- chains written before box ids ------------------------------------------------------------------------


def make_legacy(settings_: Settings, retired: bool) -> tuple[str, str | None]:
    """A key store as the code before box ids wrote it (no box, no pending events); records without box."""
    ensure_keystore(settings_.key_store, "hmac-sha256")
    if retired:
        rotate_key(settings_.key_store, "hmac-sha256")
    document = json.loads(settings_.key_store.read_text())
    del document["box"]
    document.pop("pending_events", None)
    settings_.key_store.write_text(json.dumps(document))
    settings_.key_store.chmod(0o600)
    store = load_keystore(settings_.key_store)
    old = next((k.info.key_id for k in store.keys if k.info.status is KeyStatus.RETIRED), None)
    return store.active.info.key_id, old


def test_a_legacy_chain_verifies_with_a_note_then_binds(tmp_path: Path) -> None:
    settings_ = box_settings(tmp_path)
    active, retired = make_legacy(settings_, retired=True)
    assert retired is not None
    writer = LogLineWriter(settings_)
    old_secret = load_keystore(settings_.key_store).find(retired)
    assert old_secret is not None and old_secret.secret is not None
    # Records signed by the retired key before the switch (an old chain), then by the active one.
    videos = settings_.storage_root / "loglines" / "videos"
    for number in range(2):
        writer.append("videos", draft(number), slug="v")
    loglines = settings_.storage_root / "loglines"
    report = verify_paths([loglines], load_keystore(settings_.key_store).verification_keys())
    assert report.ok and report.logs["videos"].legacy == 2 and report.logs["videos"].box is None

    # bootstrap binds the store: a box id, and the old retirement recorded in every log from now on.
    assert ensure_keystore(settings_.key_store, "hmac-sha256") is StoreSetup.BOUND
    record_pending(settings_)
    store = load_keystore(settings_.key_store)
    assert store.box is not None and events(videos) == [{"event": "retired", "key_id": retired}]
    writer.append("videos", draft(3), slug="v")
    report = verify_paths([loglines], store.verification_keys())
    assert report.ok and report.logs["videos"].legacy == 2 and report.logs["videos"].box == store.box

    # A record without box id after boxed ones (even by the active key), and the retired key after its
    # (bind-time) retirement record.
    files = sorted(videos.glob("*.logline.json"))
    prev = hashlib.sha256(files[-1].read_bytes()).hexdigest()
    thief = make_signer(retired, store.active.info.algorithm, old_secret.secret)
    forged = forge_legacy(videos, store.signer(), seq=len(files) + 1, prev=prev)
    report = verify_paths([loglines], store.verification_keys())
    bad = {Path(r.path).name: r.reason for r in report.results if not r.valid}
    assert bad == {forged.name: Reason.BOX_MISMATCH}
    forged.unlink()
    forged = forge_legacy(videos, thief, seq=len(files) + 1, prev=prev, box=store.box)
    report = verify_paths([loglines], store.verification_keys())
    assert {Path(r.path).name: r.reason for r in report.results if not r.valid} == {forged.name: Reason.KEY_RETIRED}
    assert active != retired


def forge_legacy(directory: Path, signer: Signer, *, seq: int, prev: str, box: str | None = None) -> Path:
    record: dict[str, Any] = {
        "schema_version": 1,
        "log": directory.name,
        "seq": seq,
        "who": "x",
        "did": "x",
        "this": "x",
        "when": "2001-01-01T00:00:00Z",
        "status": "ok",
        "source": {"type": "video", "id": "x"},
        "prev": prev,
    }
    if box is not None:
        record["box"] = box
    record["signature_details"] = {
        "algorithm": signer.algorithm.value,
        "key_id": signer.key_id,
        "signature": signer.sign(signed_bytes(record)),
    }
    path = directory / f"{seq:08d}.forged.logline.json"
    path.write_bytes(canonicalize(record))
    return path


def test_a_retired_key_in_a_single_file_check_needs_the_log(tmp_path: Path) -> None:
    settings_ = box_settings(tmp_path)
    ensure_keystore(settings_.key_store, "hmac-sha256")
    record_pending(settings_)
    first = LogLineWriter(settings_).append("videos", draft(0), slug="v")
    rotate_key(settings_.key_store, "hmac-sha256")
    record_pending(settings_)
    keys = load_keystore(settings_.key_store).verification_keys()
    alone = verify_paths([first.path], keys)
    assert alone.results[0].reason is Reason.KEY_RETIRED and "files given" in alone.results[0].detail
    assert verify_paths([first.path.parent], keys).ok
    assert alone.results[0].verdict is Verdict.INVALID


@pytest.mark.parametrize("bad", ["b-XYZ", "box", "b-0123"])
def test_box_option_must_be_a_box_id(bad: str) -> None:
    from vvctl.core.errors import UsageError
    from vvctl.core.verify import resolve_expectations

    with pytest.raises(UsageError, match="not a box id"):
        resolve_expectations([], [], VerificationKeys(), box=bad)
